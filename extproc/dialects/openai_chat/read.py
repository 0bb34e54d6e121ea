"""Reading the hub: how every translator *from* Chat Completions reads a `chat.completion` and the
deltas of its stream, the same way whatever dialect it writes.
"""

from __future__ import annotations

from extproc.dialects.body_checks import not_understood


def first_choice(body: object) -> tuple[dict, dict]:
    """The first choice of a Chat Completions `chat.completion`, and its message (every translator from
    the hub reads these); a body of the wrong shape raises `not_understood`."""
    if not isinstance(body, dict):
        raise not_understood("not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise not_understood("choices is not an array of objects")
    choice = choices[0] if choices else {}
    message = choice.get("message")
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise not_understood("choices[0].message is not an object")
    return choice, message


def message_text(message: dict) -> str | None:
    """A Chat message's text content (a string, or the text of its parts); None when it has none."""
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text is not None and not isinstance(text, str):
        raise not_understood("message.content is not text")
    return text


def tool_calls_of(message: dict) -> list[tuple[dict, str, object]]:
    """A Chat message's tool calls, each as (call, function name, arguments); a list of the wrong shape or
    a call without a name raises `not_understood`."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise not_understood("tool_calls is not an array of objects")
    out = []
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise not_understood(f"tool_calls[{n}] has no function name")
        out.append((call, name, function.get("arguments")))
    return out


def reasoning_of(message: dict) -> str:
    """A message's or delta's reasoning text, under DeepSeek's name or OpenRouter's."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


class ToolCallSlots:
    """Which tool call a streamed Chat Completions delta belongs to. Peers key parallel calls by `index`;
    some providers send every call with `index: 0` and tell them apart only by `id`. A new id at an index
    already in use starts a new call, and later id-less deltas at that index continue the newest one.
    Keys count calls in the order they appeared, so sorting by key keeps the provider's order."""

    def __init__(self) -> None:
        self._current: dict[int, int] = {}  # provider index → key of the newest call there
        self._ids: dict[int, str] = {}  # key → the call's id, once known
        self._next = 0

    def key(self, index: int, call_id: object) -> int:
        key = self._current.get(index)
        named = isinstance(call_id, str) and bool(call_id)
        if key is None or (named and key in self._ids and self._ids[key] != call_id):
            key = self._current[index] = self._next
            self._next += 1
        if named and key not in self._ids:
            self._ids[key] = call_id  # type: ignore[assignment]
        return key
