"""Routing markers: `[LUNAROUTE:name]` in the turn's prompt picks the provider for that turn.

A user (or the Claude Code plugin, which injects the marker inside a `<system-reminder>` block) writes
the marker into a prompt. Claude Code resends the whole conversation on every request of a turn, so the
marker is looked for in the *turn's prompt* only, never in older messages: an old marker in history is
ignored, and every tool-loop follow-up of the same turn finds the same marker again (and strips it again,
so the provider never sees it and the prompt-cache prefix stays the same on every request of the turn).

Which message is the turn's prompt (walking backwards through `messages`):

- Anthropic: the last `role: "user"` message that carries text (string content, or a `text` block).
  `role: "system"` entries (the mid-conversation system beta) and assistant messages are skipped. A user
  message holding only `tool_result` blocks is a tool-loop follow-up and is skipped. A user message that
  holds `tool_result` blocks *and* text (Claude Code attaches `<system-reminder>` text to tool results) is
  also part of the tool loop: it is chosen only if its text carries a marker, otherwise the walk goes on to
  the turn's prompt — unless its text is more than `<system-reminder>` blocks: then it is a new prompt
  (Claude Code's `--continue`/`--resume` puts the next prompt beside the last tool results), and an
  older marker must not route it. Text inside `tool_result` content never counts.
- OpenAI: the last `role: "user"` message with text (string content, or `{"type": "text"}` parts);
  `tool`, `system`, `developer` and `assistant` messages are skipped.

Marker syntax, decided:

- `[LUNAROUTE:` is matched exactly (upper case, no spaces); the name is `[A-Za-z0-9][A-Za-z0-9_-]*`
  (at most 63 characters, like config names) and is lower-cased, so `[LUNAROUTE:GPT]` means provider
  `gpt` (provider names are lower case by config, so this can never be ambiguous).
- `clear` is reserved: `[LUNAROUTE:clear]` means "no marker override for this turn", even if a provider
  happens to be named `clear`.
- Several markers in the prompt: the LAST one (in reading order, across the message's text blocks) wins,
  so a marker the user types after the plugin's injected one overrides it. All of them are stripped.
- A name that is not a configured provider is `unknown`: it is stripped too (the caller warns, counts a
  metric and routes as if there were no marker).
- The pattern decides, never the bare substring: text that merely mentions `[LUNAROUTE:` (a tool-loop
  follow-up explaining the syntax, `[LUNAROUTE: gpt]`) is not a marker and does not make its message the
  turn's prompt.
- The escape: a marker quoted as code — inside a backtick code span (`` `[LUNAROUTE:gpt]` ``) or a fenced
  code block (```` ``` ````) — is text, not a marker: it neither routes nor is stripped, so a user can
  write about markers.

Stripping, decided (only in the chosen message, only when a marker was found):

- A marker inside `<system-reminder>…</system-reminder>` removes that whole block and the whitespace after
  it (or before it, when the block ends the text): the block was injected only to carry the marker. The
  block is the innermost one around the marker (no other opening tag inside it), so an unclosed
  `<system-reminder>` earlier in the text never takes the user's text with it.
- A marker in plain text is removed with one adjacent space (`"a [LUNAROUTE:x] b"` → `"a b"`).
- A text block left empty or whitespace-only is removed (Anthropic rejects such blocks); its
  `cache_control` moves to the block before it so the client's prompt-cache breakpoint survives.
- A message that would be left with no content at all keeps one text of `EMPTY_PROMPT` instead: an
  empty user message is rejected by Anthropic, and dropping the message would make the conversation end
  with an assistant turn (a prefill), which changes its meaning.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from .dialects.base import Dialect

MarkerKind = Literal["provider", "clear", "unknown", "none"]

PREFIX = "[LUNAROUTE:"
CLEAR = "clear"
EMPTY_PROMPT = "(empty message)"

MARKER_RE = re.compile(r"\[LUNAROUTE:([A-Za-z0-9][A-Za-z0-9_-]{0,62})\]")
_REMINDER_RE = re.compile(r"<system-reminder>(?:(?!<system-reminder>).)*?</system-reminder>", re.DOTALL)
# Code the user quoted: a fenced block, else an inline span (one or more backticks, closed by as many).
_CODE_RE = re.compile(r"```.*?(?:```|\Z)|(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Marker:
    """What the turn's prompt asked for. `name` is set for `provider` and `unknown`."""

    kind: MarkerKind
    name: str | None = None


NO_MARKER = Marker("none")


def take_marker(body: dict[str, Any], dialect: Dialect, providers: Collection[str]) -> tuple[Marker, bool]:
    """Find the marker in the turn's prompt and strip it from `body` in place.

    Markers left in earlier user messages (the history of marked turns) are stripped too, without
    counting: the provider then sees the same history it saw when those turns were sent, so its
    prompt cache keeps working. Returns `(marker, changed)`; `changed` is False exactly when the body
    was not touched, so the caller can forward the original bytes instead of re-serialising.
    """
    key = "input" if dialect == "openai-responses" else "messages"
    if isinstance(body.get(key), str):  # a Responses `input` given as one string is the prompt itself
        prompt = {"role": "user", "content": body[key]}
        marker = _take(prompt, providers)
        body[key] = prompt["content"]
        return marker, marker is not NO_MARKER
    messages = body.get(key)
    if not isinstance(messages, list):
        return NO_MARKER, False
    message = _prompt_message(messages, dialect)
    if message is None:
        return NO_MARKER, False
    marker = _take(message, providers)
    history = _strip_history(messages, message)
    return marker, marker is not NO_MARKER or history


def _take(message: dict[str, Any], providers: Collection[str]) -> Marker:
    content = message.get("content")
    if isinstance(content, str):
        found = _last_marker([content])
        if found is None:
            return NO_MARKER
        stripped = _strip(content)
        message["content"] = stripped if stripped.strip() else EMPTY_PROMPT
        return _classify(found, providers)
    if not isinstance(content, list):  # neither text nor blocks: nothing to look into
        return NO_MARKER
    found = _last_marker(_texts(content))
    if found is None:
        return NO_MARKER
    message["content"] = _strip_blocks(content)
    return _classify(found, providers)


def _strip_history(messages: list[Any], prompt: dict[str, Any]) -> bool:
    """Strip old markers from the other user messages' own texts (never from tool results)."""
    changed = False
    for message in messages:
        if message is prompt or not isinstance(message, dict) or message.get("role") != "user":
            continue
        if _has_marker(_texts(message.get("content"))):
            changed = _take(message, ()) is not NO_MARKER or changed
    return changed


def _classify(name: str, providers: Collection[str]) -> Marker:
    if name == CLEAR:
        return Marker("clear")
    return Marker("provider" if name in providers else "unknown", name)


def _text_of(block: Any) -> str | None:
    """The text of an Anthropic `text` block, an OpenAI `text` part or a Responses `input_text` part;
    None for anything else."""
    if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
        text = block.get("text")
        if isinstance(text, str):
            return text
    return None


def _texts(content: Any) -> list[str]:
    """The message's own texts; tool_result blocks (and their nested content) are never looked into."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [t for t in map(_text_of, content) if t is not None]


def markers(text: str) -> list[re.Match[str]]:
    """The markers in one text, in order, without those quoted as code (the escape, module docstring)."""
    if PREFIX not in text:
        return []
    found = list(MARKER_RE.finditer(text))
    if found and "`" in text:
        quoted = [m.span() for m in _CODE_RE.finditer(text)]
        found = [m for m in found if not any(a <= m.start() and m.end() <= b for a, b in quoted)]
    return found


def _has_marker(texts: list[str]) -> bool:
    return any(markers(t) for t in texts)


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _prompt_message(messages: Any, dialect: Dialect) -> dict[str, Any] | None:
    """The turn's prompt: the last user message that carries text (see the module docstring)."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        texts = _texts(content)
        if not texts:
            continue
        if dialect == "anthropic" and _has_tool_result(content) and not _has_marker(texts) \
                and not any(_REMINDER_RE.sub("", t).strip() for t in texts):
            continue  # a tool-loop follow-up with attached reminders: the turn's prompt is further back
        return message
    return None


def _last_marker(texts: list[str]) -> str | None:
    """The last marker name in reading order, lower-cased."""
    name = None
    for text in texts:
        for match in markers(text):
            name = match.group(1).lower()
    return name


def _strip(text: str) -> str:
    """Remove every marker from one text, with the reminder block or one space that carried it.

    Repeats until no marker is left, because removing one could join two halves into a new one.
    """
    while markers(text):
        text = _drop_plain_markers(_drop_reminders(text))
    return text


def _drop_reminders(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _REMINDER_RE.finditer(text):
        if not markers(match.group()):
            continue
        before = text[pos : match.start()]
        end = match.end()
        while end < len(text) and text[end].isspace():
            end += 1
        out.append(before.rstrip() if end == len(text) else before)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _drop_plain_markers(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in markers(text):
        start, end = match.span()
        if end < len(text) and text[end] == " ":
            end += 1
        elif start > pos and text[start - 1] == " ":
            start -= 1
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _strip_blocks(content: list[Any]) -> list[Any]:
    """Strip markers from the text blocks of one message; drop blocks left blank, never empty the list."""
    kept: list[Any] = []
    orphan_cache = None
    for block in content:
        text = _text_of(block)
        if text is None or not markers(text):
            kept.append(block)
            continue
        new = _strip(text)
        if new.strip():
            kept.append({**block, "text": new})
            continue
        if "cache_control" in block:
            if kept and isinstance(kept[-1], dict) and "cache_control" not in kept[-1]:
                kept[-1] = {**kept[-1], "cache_control": block["cache_control"]}
            else:
                orphan_cache = block["cache_control"]
    if not kept:
        placeholder: dict[str, Any] = {"type": "text", "text": EMPTY_PROMPT}
        if orphan_cache is not None:
            placeholder["cache_control"] = orphan_cache
        kept.append(placeholder)
    return kept
