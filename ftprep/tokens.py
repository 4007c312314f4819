"""Token counting as OpenAI's cookbook counts chat tokens, offline, with a labelled fallback.

tiktoken reads its encodings from ``TIKTOKEN_CACHE_DIR`` when set (tests and CI point it at
``../shared/tiktoken-cache``). When the encoding cannot be loaded (no cache, no network), counts fall
back to an estimate of one token per 4 bytes of UTF-8, and every report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

TOKENS_PER_MESSAGE, TOKENS_PER_NAME, TOKENS_PER_REPLY = 3, 1, 3


@lru_cache(maxsize=4)
def text_counter(encoding: str) -> tuple[Callable[[str], int], str | None]:
    """(count(text) -> tokens, None) with tiktoken, or (estimate, reason) when the encoding is unavailable."""
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
