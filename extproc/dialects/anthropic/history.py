"""A conversation that went through other providers, made acceptable to an Anthropic-type provider.

After turns served elsewhere, a history holds what Anthropic rejects: `thinking` blocks without a
signature (Anthropic signatures are never invented) and tool ids that break its pattern (another
provider's `functions.Bash:0`). `fit_history` fixes both; `may_need_fit` is the cheap byte check that
spares nearly every request (and the fast path) the walk.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

# Anthropic's pattern for tool_use ids (and so for the tool_result blocks that answer them).
TOOL_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
# The cheap byte check before `fit_history` walks a body; envoy/fast.lua counts the same strings. JSON
# writers put `":"` (compact) or `": "` (Python's json, pretty printers) between a key and its value.
_THINKING_TEXT = re.compile(rb'"thinking": ?"')
_SIGNATURE = re.compile(rb'"signature": ?"')
_EMPTY_SIGNATURE = re.compile(rb'"signature": ?""')
_TOOL_RESULT_ID = re.compile(rb'"tool_use_id": ?"')
_TOOLU_RESULT_ID = re.compile(rb'"tool_use_id": ?"toolu_')
# An assistant message left without content after its unsigned thinking is dropped (Anthropic rejects
# empty content; dropping the message would break the user/assistant alternation).
EMPTY_ASSISTANT = "(no text)"



def fitted_tool_id(tool_id: str) -> str:
    """A tool id Anthropic accepts for one that breaks its pattern (another provider's `functions.Bash:0`):
    derived from the id alone, so a tool_use and its tool_result, and every later turn that resends
    them, get the same one (the provider's prompt cache sees the same history)."""
    return "toolu_" + hashlib.sha256(tool_id.encode()).hexdigest()[:24]


def generated_tool_id(response_id: str | None, n: int) -> str:
    """An id for the `n`th tool call of a response whose provider sent none. Unique per response (from
    the provider's response id, else random), never `toolu_0` again on the next turn: Anthropic rejects
    a history whose tool ids repeat."""
    return fitted_tool_id(f"{response_id}#{n}" if response_id else uuid.uuid4().hex)


def may_need_fit(raw: bytes) -> bool:
    """Whether a raw Anthropic body may hold what `fit_history` changes: a thinking text without as many
    signatures, an empty signature, or a tool_result answering an id that is not Anthropic's own
    (`toolu_…`; every tool_use is answered in the same request). False means the bytes are fine as they
    are, so nearly every request is spared the walk, and the fast path its trip to Python."""
    return (len(_TOOL_RESULT_ID.findall(raw)) > len(_TOOLU_RESULT_ID.findall(raw))
            or _EMPTY_SIGNATURE.search(raw) is not None
            or len(_THINKING_TEXT.findall(raw)) > len(_SIGNATURE.findall(raw)))


def fit_history(body: dict) -> bool:
    """Make a conversation that went through other providers acceptable to an Anthropic-type provider,
    in place; True when anything changed (False: the client's bytes can go as they are).

    After turns served by a reasoning provider, the history holds `thinking` blocks without a signature
    (Anthropic signatures are never invented), which Anthropic rejects (`thinking.signature: Field
    required`): they are dropped. Tool ids that do not fit Anthropic's pattern are mapped with
    `fitted_tool_id`, in tool_use and tool_result blocks alike."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    changed = False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        kept: list[Any] = []
        for block in content:
            if isinstance(block, dict):
                kind = block.get("type")
                if kind == "thinking" and not block.get("signature"):
                    continue
                key = "id" if kind == "tool_use" else "tool_use_id" if kind == "tool_result" else None
                value = block.get(key) if key else None
                if key and isinstance(value, str) and not TOOL_ID_RE.fullmatch(value):
                    block = {**block, key: fitted_tool_id(value)}
            kept.append(block)
        if len(kept) != len(content) or any(a is not b for a, b in zip(kept, content, strict=True)):
            message["content"] = kept or [{"type": "text", "text": EMPTY_ASSISTANT}]
            changed = True
    return changed
