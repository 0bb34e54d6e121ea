"""The client's session, one rule for every reader: the prompt-cache key of a translated request, the
budget a session spends and the session a record belongs to all name the same session.

Where clients say it: Claude Code's `x-claude-code-session-id` header (stable, reused by `--resume`),
else the `session_id` inside Claude Code's `metadata.user_id` (a JSON string; older versions: a
`…_session_<uuid>` suffix), else a session header (`x-session-id`, Codex's `session-id` or
`session_id`), else a Responses request's `prompt_cache_key` (Codex sends its conversation id there).
Values that are not plain ids are ignored, not cleaned: a cleaned id could merge two sessions, and ids
name record rows and appear in terminals, so nothing else gets in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
CLAUDE_CODE_HEADER = "x-claude-code-session-id"
SESSION_HEADERS = ("x-session-id", "session-id", "session_id")  # anyone's, Codex's (both spellings)


def valid_session(value: object) -> str | None:
    """`value` when it is a plain id, else None."""
    return value if isinstance(value, str) and _SESSION_ID.match(value) else None


def session_id(headers: Mapping[str, str], doc: dict | None = None) -> str | None:
    """The client's session from its request headers and (parsed) body; None when it names none."""
    first = valid_session(headers.get(CLAUDE_CODE_HEADER))
    if first:
        return first
    if doc is not None:
        from_metadata = _metadata_session(doc)
        if from_metadata:
            return from_metadata
    from_header = next((s for h in SESSION_HEADERS if (s := valid_session(headers.get(h)))), None)
    if from_header or doc is None:
        return from_header
    return valid_session(doc.get("prompt_cache_key"))


def _metadata_session(doc: dict) -> str | None:
    meta = doc.get("metadata")
    user = meta.get("user_id") if isinstance(meta, dict) else None
    if not isinstance(user, str):
        return None
    if user.startswith("{"):
        try:
            inner = orjson.loads(user)
        except orjson.JSONDecodeError:
            return None
        return valid_session(inner.get("session_id")) if isinstance(inner, dict) else None
    _, sep, tail = user.rpartition("_session_")
    return valid_session(tail) if sep else None
