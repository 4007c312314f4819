"""The validation checks, one table: each stable code with its severity, what is wrong and what to do.

``tasks/validate.py`` finds them; the README's table lists the same codes.
"""

from __future__ import annotations

from ftprep.openai_models import MIN_EXAMPLES

ERROR, WARNING = "error", "warning"

# code -> (severity, what is wrong, what to do)
CHECKS: dict[str, tuple[str, str, str]] = {
    "bom": (ERROR, "file starts with a UTF-8 byte-order mark", "save the file as UTF-8 without BOM"),
    "not_utf8": (ERROR, "line is not UTF-8", "re-save the file as UTF-8"),
    "blank_line": (ERROR, "blank line", "remove blank lines: every line must be one JSON object"),
    "invalid_json": (ERROR, "line is not valid JSON", "write exactly one JSON object per line"),
    "not_object": (ERROR, "line is JSON but not an object", 'write one {"messages": [...]} object per line'),
    "legacy_format": (ERROR, "legacy prompt/completion record",
                      'convert to chat: {"messages": [{"role": "user", "content": <prompt>}, '
                      '{"role": "assistant", "content": <completion>}]}'),
    "missing_messages": (ERROR, "no 'messages' key", 'put the conversation in a "messages" list'),
    "messages_not_list": (ERROR, "'messages' is not a list", 'make "messages" a list of message objects'),
    "messages_empty": (ERROR, "'messages' is empty", "give each example at least a user and an assistant message"),
    "unknown_key": (ERROR, "unknown key in the example", "keep only messages, tools, functions, parallel_tool_calls"),
    "message_not_object": (ERROR, "a message is not an object", 'write each message as {"role": ..., "content": ...}'),
    "missing_role": (ERROR, "a message has no role", "give every message a role"),
    "invalid_role": (ERROR, "a message has a role OpenAI does not accept",
                     "use system, developer, user, assistant, tool or function"),
    "missing_content": (ERROR, "a message has no content", "give every message a content string"),
    "empty_content": (ERROR, "a message has empty content", "fill in the content or drop the example"),
    "invalid_content": (ERROR, "a message's content is neither a string nor valid content parts",
                        'use a string, or a list of {"type": "text", "text": ...} parts'),
    "unknown_message_key": (ERROR, "a message has an unknown key",
                            "keep only role, content, name, weight, tool_calls, tool_call_id, function_call"),
    "invalid_weight": (ERROR, "a message's weight is not 0 or 1", "set weight to 0 or 1, or remove it"),
    "no_assistant": (ERROR, "no assistant message", "end each example with the assistant's answer"),
    "too_few_examples": (ERROR, f"fewer than {MIN_EXAMPLES} examples (OpenAI's minimum)",
                         f"add examples: OpenAI needs at least {MIN_EXAMPLES} per file"),
    "too_many_tokens": (ERROR, "example is over the model's per-example token limit",
                        "shorten or split those examples, or drop them"),
    "duplicate_example": (ERROR, "example repeats an earlier line", "remove the repeated lines"),
    "leakage_exact": (ERROR, "validation example is also in the training file",
                      "remove it from one of the files: validation must be unseen data"),
    "leakage_prompt": (ERROR, "validation example has the same user prompt as a training example",
                       "remove it from one of the files: validation prompts must be unseen"),
    "missing_system": (WARNING, "no system message", "fine if intended; the model will be trained without one"),
    "missing_user": (WARNING, "no user message", "add the user's input unless this is intended"),
    "consecutive_roles": (WARNING, "two consecutive messages have the same role",
                          "merge them unless this is intended"),
}
