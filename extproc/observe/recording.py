"""Session recording, the request-path half: what one exchange hands to the record writer.

Everything here runs on the worker's event loop, so it only keeps references and counts bytes;
reassembling streams, redacting, compressing and writing happen in the writer thread
(`sessions.RecordWriter`). A record holds the request as the client sent it, the request as the
provider got it (when the gateway changed it), the response as the client got it, the routing
decision, usage, cost, status and timings. Never a header: credentials live there.
"""

from __future__ import annotations

import ipaddress
import time
from time import perf_counter
from typing import Any


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
