"""Which key of a pool a conversation starts on: weighted rendezvous hashing, integers only.

Every worker, every replica and Envoy's pools.lua compute the same pick from the same inputs, without
asking anyone: the conversation's id and the pool's usable keys. Each key takes part with as many
virtual names (`name#0`, `name#1`, …) as its weight; the key owning the highest hash (FNV-1a, then
MurmurHash3's finalizer) of `conversation \\0 name#i` wins (ties: the earlier key). Removing a key
(cooling, revoked) moves only the conversations it held; the others stay where their prompt cache is.
Integers only, so LuaJIT's doubles and Python's ints cannot disagree (tests/test_pools_pick.py holds the two equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from ..session_id import session_id

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a: simple enough to write identically in Lua."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def mix32(h: int) -> int:
    """MurmurHash3's finalizer: FNV-1a alone barely stirs the high bits for the last bytes of a
    string, and the virtual names differ only there."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    return h ^ (h >> 16)


def start_key(keys: Iterable[tuple[str, int]], conversation: str) -> str | None:
    """The key (name) `conversation` starts on among `keys` (name, weight) in config order; None
    when no key is usable."""
    best: tuple[int, int] | None = None
    chosen = None
    prefix = conversation.encode() + b"\0"
    for index, (name, weight) in enumerate(keys):
        for i in range(weight):
            score = (mix32(fnv1a(prefix + f"{name}#{i}".encode())), -index)
            if best is None or score > best:
                best, chosen = score, name
    return chosen


def first_user_text(doc: Mapping) -> str | None:
    """The first user turn of a conversation, as sent (a string, or its content blocks serialised):
    the conversation's identity when the client names none."""
    items = doc.get("messages")
    if not isinstance(items, list):
        items = doc.get("input") if isinstance(doc.get("input"), list) else None
        if items is None:
            return doc["input"] if isinstance(doc.get("input"), str) else None
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            return content if isinstance(content, str) else orjson.dumps(content).decode()
    return None


def conversation_id(headers: Mapping[str, str], doc: Mapping | None) -> str | None:
    """Who a request belongs to, for the pick: the client's session (`extproc.session_id`: Claude
    Code's `x-claude-code-session-id`, `metadata.user_id`'s session, `x-session-id`, Codex's
    `session-id` / `session_id`, the body's `prompt_cache_key`), else a hash of the first user turn.
    pools.lua computes the session the same way and leaves the first user turn to Python."""
    session = session_id(headers, dict(doc) if doc is not None else None)
    if session or doc is None:
        return session
    text = first_user_text(doc)
    return f"u{fnv1a(text.encode()):08x}" if text else None
