"""Envoy's admin interface, over the Unix socket `lunaroute up` gives it (or a host:port)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("lunaroute")


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


FAST_PATH_STATS = r"^vhost\.lunaroute\.route\.fast\.upstream_rq_(total|[1-5]xx)$"


class FastPathPoller(threading.Thread):
    """Reads Envoy's fast-path counters every few seconds (off the event loop) for /metrics: requests
    Envoy sent straight to a provider never reach Python, so Python cannot count them itself."""

    def __init__(self, socket_path: str, publish: Callable[[dict[str, int]], None], every_s: float = 5.0) -> None:
        super().__init__(name="envoy-fast-path-stats", daemon=True)
        self.socket_path, self.publish, self.every_s = socket_path, publish, every_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.every_s):
            found = stats(FAST_PATH_STATS, self.socket_path)
            if found is not None:
                self.publish({name.rsplit("_", 1)[-1]: value for name, value in found.items()})

    def stop(self) -> None:
        self._stop.set()
