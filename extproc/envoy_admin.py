"""Envoy's admin interface, over the Unix socket `lunaroute up` gives it (or a host:port)."""

from __future__ import annotations

import http.client
import json
import socket


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def admin_request(method: str, path: str, socket_path: str | None = None, address: str | None = None,
                  timeout: float = 2.0) -> bytes | None:
    """One admin request (to `socket_path`, else `address` "host:port"); None when it does not answer."""
    try:
        if socket_path:
            conn: http.client.HTTPConnection = _UnixHTTPConnection(socket_path, timeout)
        else:
            host, _, port = (address or "").rpartition(":")
            conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.read() if resp.status == 200 else None
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None


def stats(pattern: str, socket_path: str | None = None, address: str | None = None) -> dict[str, int] | None:
    """Envoy counters and gauges whose names match the regex `pattern`."""
    raw = admin_request("GET", f"/stats?format=json&filter={pattern}", socket_path, address)
    try:
        return {s["name"]: int(s["value"]) for s in json.loads(raw or b"")["stats"] if "value" in s}
    except (ValueError, KeyError, TypeError):
        return None
