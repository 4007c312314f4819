"""Validate one line of a chat fine-tuning file: its checks, its digests, and its tokens when they are needed.

:func:`check_example` is the whole rule for one line; ``tasks/validation_scan.py`` runs it over every line of a
file. A line of the plain shape every ftprep-written line has (messages of exactly a role and a non-blank string
content) takes a short path that reaches the same result as the full checks with a fraction of their work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from ftprep.tokens import UPPER_MARGIN, count_example
from tasks.token_stats import ALL, in_sample

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
EXAMPLE_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}


@dataclass(slots=True)
class LineResult:
    lineno: int
    codes: list[str] = field(default_factory=list)
    tokens: int | None = None
    upper: int | None = None  # never below the true count: what the per-example limit is checked against
    estimated: bool = False  # tools or calls were counted as estimates
    sampled: bool = False  # in the token sample: its count goes into the statistics
    example: bytes | None = None  # digest of the whole example, for duplicates and leakage
    prompt: str | None = None  # its user messages' text, for prompt leakage


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _content_ok(content: Any) -> bool | None:
    """True if non-empty, False if empty, None if of a wrong type."""
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        if not content:
            return False
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                return None
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                return None
            if part["type"] == "text" and not part["text"].strip():
                return False
        return True
    return None


def _role_codes(roles: tuple[Any, ...] | list[Any]) -> list[str]:
    """The checks that depend only on the sequence of roles."""
    codes = []
    if "assistant" not in roles:
        codes.append("no_assistant")
    if "system" not in roles and "developer" not in roles:
        codes.append("missing_system")
    if "user" not in roles:
        codes.append("missing_user")
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        codes.append("consecutive_roles")
    return codes


_PLAIN_ROLE_CODES: dict[tuple[str, ...], tuple[str, ...]] = {}  # role sequence -> its codes, for plain lines


def _plain(obj: Any) -> tuple[tuple[str, ...], list[str]] | None:
    """(role codes, user texts) of an example of the plain shape, else None (then the full checks run).

    Plain: an object with only ``messages``, a non-empty list of objects each with exactly ``role`` (one OpenAI
    accepts) and ``content`` (a string with a non-whitespace character). Of all the per-message checks, none can
    find anything in such a line, so only the checks of the role sequence remain, remembered per sequence.
    """
    if type(obj) is not dict or len(obj) != 1:
        return None
    messages = obj.get("messages")
    if type(messages) is not list or not messages:
        return None
    roles, users = [], []
    for m in messages:
        if type(m) is not dict or len(m) != 2:
            return None
        role, content = m.get("role"), m.get("content")
        # ``not content.isspace()`` of a non-empty string is ``bool(content.strip())`` without the copy
        if type(role) is not str or type(content) is not str or not content or content.isspace():
            return None
        roles.append(role)
        if role == "user":
            users.append(content)
    sequence = tuple(roles)
    codes = _PLAIN_ROLE_CODES.get(sequence)
    if codes is None:
        if not ROLES.issuperset(sequence):
            return None
        codes = tuple(_role_codes(sequence))
        if len(_PLAIN_ROLE_CODES) < 1024:
            _PLAIN_ROLE_CODES[sequence] = codes
    return codes, users


def _structure(obj: dict[str, Any], codes: list[str]) -> tuple[bool, list[str]]:
    """The full per-message checks of an object with a ``messages`` list: (well formed, user texts)."""
    roles, users, well_formed = [], [], True
    for m in obj["messages"]:
        if not isinstance(m, dict):
            codes.append("message_not_object")
            well_formed = False
            continue
        role = m.get("role")
        if role is None:
            codes.append("missing_role")
        elif not isinstance(role, str) or role not in ROLES:
            codes.append("invalid_role")
            well_formed = False
            role = str(role)
        roles.append(role)
        if not set(m) <= MESSAGE_KEYS:
            codes.append("unknown_message_key")
        if "content" not in m:
            if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                codes.append("missing_content")
        else:
            ok = _content_ok(m["content"])
            if ok is None and not (m["content"] is None and role == "assistant" and m.get("tool_calls")):
                codes.append("invalid_content")
                well_formed = False  # no token count for content of the wrong type
            elif ok is False:
                codes.append("empty_content")
        if "weight" in m and m["weight"] not in (0, 1):
            codes.append("invalid_weight")
        if role == "user" and isinstance(m.get("content"), str):
            users.append(m["content"])
    codes.extend(_role_codes(roles))
    return well_formed, users


def _estimated_parts(obj: dict[str, Any]) -> bool:
    """Has the example tool definitions or calls (counted as the cookbook estimates them)?"""
    return bool(obj.get("tools") or obj.get("functions")) or any(
        isinstance(m, dict) and bool(m.get("tool_calls") or m.get("function_call")) for m in obj["messages"])


def check_example(raw: bytes, lineno: int, count, encoding: str = "o200k_base", exact: bool = True,
                  limit: int | None = None, cut: int = ALL, raw_digest: bool = False) -> LineResult:
    """Check one line of a chat fine-tuning file; count its tokens (:func:`ftprep.tokens.count_example`) if it is
    well-formed and in the sample (``cut``, see :mod:`tasks.token_stats`), or if its bytes cannot prove it under
    the per-example ``limit``.

    The example's digest (duplicates, leakage, the sample) is of its JSON re-written with sorted keys, so lines
    that differ only in spacing or key order are the same example; ``raw_digest`` digests the line's bytes
    instead, which is the same thing for a file whose every line is written one canonical way (ftprep's writer:
    orjson's compact form from a fixed template, so equal examples are equal bytes)."""
    result = LineResult(lineno)
    codes = result.codes
    if not raw or raw.isspace():  # ``not raw.strip()`` without the copy
        codes.append("blank_line")
        return result
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            codes.append("not_utf8")
            return result
        codes.append("invalid_json")
        return result
    plain = _plain(obj)
    if plain is not None:
        role_codes, users = plain
        codes.extend(role_codes)
        well_formed = True
    else:
        if not isinstance(obj, dict):
            codes.append("not_object")
            return result
        messages = obj.get("messages")
        if messages is None:
            codes.append("legacy_format" if "prompt" in obj and "completion" in obj else "missing_messages")
            return result
        if not set(obj) <= EXAMPLE_KEYS:
            codes.append("unknown_key")
        if not isinstance(messages, list):
            codes.append("messages_not_list")
            return result
        if not messages:
            codes.append("messages_empty")
            return result
        well_formed, users = _structure(obj, codes)
    result.example = digest(raw if raw_digest else orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    if users:
        result.prompt = "\x00".join(users)
    if well_formed:
        result.sampled = in_sample(result.example, cut)
        # tool definitions and calls are estimated, and an estimate can exceed their bytes: such an example is
        # always counted, so that whether it is over the limit never depends on the sample
        if result.sampled or limit is None or len(raw) + UPPER_MARGIN > limit or \
                (plain is None and _estimated_parts(obj)):
            counted = count_example(obj, len(raw), count, encoding, exact)
            result.tokens, result.upper, result.estimated = counted.tokens, counted.upper, counted.estimated
        else:  # a token is at least one byte: the line's bytes prove it under the limit, no need to count
            result.upper = len(raw) + UPPER_MARGIN
    return result
