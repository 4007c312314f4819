"""Token counting as OpenAI's cookbook counts chat tokens, tools and calls, offline, with a labelled fallback.

tiktoken reads its encodings from ``TIKTOKEN_CACHE_DIR`` when set (tests and CI point it at
``../shared/tiktoken-cache``). When the encoding cannot be loaded (no cache, no network), counts fall
back to an estimate of one token per 4 bytes of UTF-8, and every report says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

TOKENS_PER_MESSAGE, TOKENS_PER_NAME, TOKENS_PER_REPLY = 3, 1, 3


_loading = threading.Lock()


def text_counter(encoding: str) -> tuple[Callable[[str], int], str | None]:
    """(count(text) -> tokens, None) with tiktoken, or (estimate, reason) when the encoding is unavailable.

    Loaded once per process; a call while another thread loads it (:func:`load_ahead`) waits for that load."""
    with _loading:
        return _text_counter(encoding)


_reasons_from: list[Callable[[str], str | None]] = []  # where the counting is done, when not here


def counted_elsewhere(reason: Callable[[str], str | None] | None) -> None:
    """Token counts are made in another process (:mod:`tasks.scan_child`); ``reason(encoding)`` tells whether
    they are exact there, so this process need not load the encoding to know. None: they are made here again."""
    _reasons_from[:] = [reason] if reason is not None else []


def estimate_reason(encoding: str) -> str | None:
    """Why token counts for ``encoding`` are estimates (None: exact, tiktoken loaded) where they are counted."""
    if _reasons_from:
        return _reasons_from[0](encoding)
    return text_counter(encoding)[1]


def load_ahead(encoding: str) -> None:
    """Load the encoding on a background thread (a third of a second of CPU), so that the run's validation
    finds it ready instead of loading it on its critical path."""
    threading.Thread(target=text_counter, args=(encoding,), name="ftprep-tiktoken", daemon=True).start()


@lru_cache(maxsize=4)
def _text_counter(encoding: str) -> tuple[Callable[[str], int], str | None]:
    try:
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
    except Exception as e:  # no cache and no network, or a broken cache: say so, estimate instead
        reason = f"tiktoken encoding {encoding} could not be loaded ({type(e).__name__}); token counts are " \
                 "estimates (UTF-8 bytes / 4). Set TIKTOKEN_CACHE_DIR to a folder holding the encoding."
        return (lambda text: (len(text.encode("utf-8")) + 3) // 4), reason
    encode = enc.encode_ordinary
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        n = cache.get(text)
        if n is None:
            n = len(encode(text))
            if len(text) <= 256 and len(cache) < 100_000:  # system prompts, short answers: counted once
                cache[text] = n
        return n

    return count, None


def count_chat_tokens(messages: list[dict[str, Any]], count: Callable[[str], int]) -> int:
    """The cookbook's ``num_tokens_from_messages``: 3 per message, its string values, 1 per name, 3 to reply."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += count(value)
            elif key == "content" and isinstance(value, list):  # content parts: their text
                total += sum(count(p.get("text", "")) for p in value if isinstance(p, dict))
            if key == "name":
                total += TOKENS_PER_NAME
    return total


# ------------------------------------------------------------------------------- tools and function calls
# OpenAI publishes no exact rule for tools: these are the cookbook's constants for function definitions
# (``num_tokens_for_tools``: func_init, prop_init, prop_key, enum_init, enum_item, func_end), by encoding.
TOOL_CONSTANTS = {"o200k_base": (7, 3, 3, -3, 3, 12), "cl100k_base": (10, 3, 3, -3, 3, 12)}
TOKENS_PER_CALL = 3  # a call's name and arguments, framed like a message (an estimate, as the cookbook's)
UPPER_MARGIN = 32  # the fixed text around tool definitions when the model sees them ("namespace functions {...")
TOOL_ESTIMATE_NOTE = ("examples with tools, functions, tool_calls or function_call are counted as estimates, the way "
                      "OpenAI's cookbook counts function definitions and calls; the per-example limit is checked "
                      "against an upper bound (a token is at least one UTF-8 byte), so it never under-counts")


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def count_function_definitions(definitions: Any, count: Callable[[str], int], encoding: str) -> int:
    """The cookbook's ``num_tokens_for_tools`` for ``tools`` (or legacy ``functions``), made total: parts it
    does not read (nested schemas, odd shapes) are counted as their JSON text instead of being skipped."""
    if not isinstance(definitions, list) or not definitions:
        return count(_json(definitions)) if definitions else 0
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = TOOL_CONSTANTS.get(
        encoding, TOOL_CONSTANTS["o200k_base"])
    total = func_end
    for tool in definitions:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            total += func_init + count(_json(tool))
            continue
        description = str(function.get("description") or "").removesuffix(".")
        total += func_init + count(f"{function.get('name', '')}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if not isinstance(properties, dict):
            total += count(_json(parameters)) if parameters else 0
            continue
        if properties:
            total += prop_init
        for key, prop in properties.items():
            total += prop_key
            if not isinstance(prop, dict):
                total += count(f"{key}:{_json(prop)}")
                continue
            enum = prop.get("enum")
            if isinstance(enum, list):
                total += enum_init + sum(enum_item + count(str(item)) for item in enum)
            p_desc = str(prop.get("description") or "").removesuffix(".")
            total += count(f"{key}:{prop.get('type', '')}:{p_desc}")
            rest = {k: v for k, v in prop.items() if k not in ("type", "description", "enum")}
            if rest:  # nested objects, array items, formats: the cookbook skips them; their JSON text counts
                total += count(_json(rest))
    return total


def count_calls(message: dict[str, Any], count: Callable[[str], int]) -> int:
    """An assistant message's ``tool_calls`` and ``function_call``: per call its name and arguments (an estimate)."""
    calls = message.get("tool_calls")
    calls = list(calls) if isinstance(calls, list) else ([calls] if calls else [])
    if message.get("function_call"):
        calls.append({"function": message["function_call"]})
    total = 0
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            total += TOKENS_PER_CALL + count(_json(call))
            continue
        arguments = function.get("arguments", "")
        total += TOKENS_PER_CALL + count(str(function.get("name", "")))
        total += count(arguments if isinstance(arguments, str) else _json(arguments))
    return total


@dataclass(slots=True)
class ExampleTokens:
    tokens: int  # the count (exact for message text with tiktoken; estimated for tools and calls)
    upper: int  # never below the true count: what the per-example limit is checked against
    estimated: bool  # does ``tokens`` include estimated parts (tools, functions, calls)?


def count_example(example: dict[str, Any], raw_size: int, count: Callable[[str], int], encoding: str,
                  exact: bool) -> ExampleTokens:
    """Tokens of one fine-tuning example: its messages as the cookbook counts them, plus its tool definitions
    and calls as the cookbook counts functions. ``upper`` replaces every estimated part by its UTF-8 bytes
    (all of ``raw_size`` when the encoding is unavailable, ``exact`` False), plus a margin."""
    messages = example["messages"]
    text = count_chat_tokens(messages, count)
    extra = uncertain_bytes = 0
    for key in ("tools", "functions"):
        if example.get(key):
            extra += count_function_definitions(example[key], count, encoding)
            uncertain_bytes += len(orjson.dumps(example[key]))
    for message in messages:
        if message.get("tool_calls") or message.get("function_call"):
            extra += count_calls(message, count)
            uncertain_bytes += len(orjson.dumps([message.get("tool_calls"), message.get("function_call")]))
    tokens = text + extra
    if not exact:
        upper = raw_size + UPPER_MARGIN
    elif uncertain_bytes:
        upper = text + uncertain_bytes + UPPER_MARGIN
    else:
        upper = tokens
    return ExampleTokens(tokens=tokens, upper=max(upper, tokens), estimated=bool(uncertain_bytes))
