"""Session recording, the request-path half: what one exchange hands to the record writer.

Everything here runs on the worker's event loop, so it only keeps references and counts bytes;
reassembling streams, redacting, compressing and writing happen in the writer thread
(`sessions.RecordWriter`). A record holds the request as the client sent it, the request as the
provider got it (when the gateway changed it), the response as the client got it, the routing
decision, usage, cost, status and timings. Never a header: credentials live there.
"""

from __future__ import annotations

import ipaddress
import re
import time
from time import perf_counter
from typing import Any

import orjson

# What a session id may look like: ids name rows and appear in terminals, so nothing else gets in.
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_SESSION_HEADERS = ("x-claude-code-session-id", "x-session-id", "session-id")  # Claude Code's, anyone's, Codex's


def valid_session(value: object) -> str | None:
    return value if isinstance(value, str) and _SESSION_ID.match(value) else None


def _metadata_session(doc: dict) -> str | None:
    """Claude Code's `metadata.user_id` is a JSON string holding `session_id` (older versions: a
    `…_session_<uuid>` suffix)."""
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


def session_of(headers: dict[str, str], doc: dict | None = None) -> str | None:
    """The client's session: Claude Code's `x-claude-code-session-id` (stable, reused by `--resume`),
    else `metadata.user_id`'s session, else `x-session-id`, else Codex's `session-id`, else the
    request id. Values that are not plain ids are ignored, not cleaned: a cleaned id could merge two
    sessions."""
    first = valid_session(headers.get(_SESSION_HEADERS[0]))
    if first:
        return first
    from_doc = _metadata_session(doc) if doc is not None else None
    return from_doc or next((s for h in _SESSION_HEADERS[1:] if (s := valid_session(headers.get(h)))),
                            None) or valid_session(headers.get("x-request-id"))


def anonymise_ip(value: str | None) -> str | None:
    """IPv4 to its /24, IPv6 to its /48: enough to tell networks apart, not people."""
    if not value:
        return None
    host = value.split(",")[0].strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]  # v4 with a port
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class Draft:
    """One exchange's record while it is in flight."""

    def __init__(self, limit: int, request: bytes, meta: dict[str, Any]) -> None:
        self.limit = limit
        self.ts = time.time()
        self.t0 = perf_counter()
        self.meta = meta
        self.request = request
        self.provider_request: bytes | None = None
        self.response: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.ttft_s: float | None = None
        self.done = False

    def add_response(self, data: bytes) -> None:
        """Bytes the client got (decoded). The first non-empty ones are the time to first token."""
        if not data:
            return
        if self.ttft_s is None:
            self.ttft_s = perf_counter() - self.t0
        room = self.limit - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data, self.truncated = data[:room], True
        self.response.append(data)
        self.size += len(data)

    def finish(self, **fields: Any) -> dict[str, Any]:
        """The record, for the writer thread; `fields` are the outcome (status, usage, cost…)."""
        self.done = True
        return {**self.meta, **fields, "ts": self.ts,
                "duration_ms": round((perf_counter() - self.t0) * 1000, 3),
                "ttft_ms": None if self.ttft_s is None else round(self.ttft_s * 1000, 3),
                "request": self.request[:self.limit], "provider_request": self.provider_request,
                "response": b"".join(self.response), "truncated": self.truncated
                or len(self.request) > self.limit}
