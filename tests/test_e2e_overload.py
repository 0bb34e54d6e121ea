"""Bodies Envoy buffers outside `limits.max_concurrent_requests` (the fast path's, up to
`limits.fast_path_max_bytes` each) cannot grow Envoy's heap past its cap (issue 23).

Twelve HTTP/1.1 clients open fast-path requests while the heap is small (every one is admitted), then
trickle 7 MiB bodies that never finish, round robin, against a 64 MiB heap cap. Envoy accounts no
HTTP/1 buffers, so `reset_high_memory_stream` never picks them; the `http1_server_abort_dispatch` load
shed point closes a connection that sends more while the heap is past 95 %. Before it: all twelve held
~85 MiB (148 % of the cap) and every new request got a 503 until they gave up.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.mock_providers import free_port

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
HEAP_CAP = 64 * MIB
CLIENTS = 12
BODY = 7 * MIB  # under fast_path_max_bytes (8 MiB): a fast-path candidate, buffered by Envoy alone
CHUNK = 256 * 1024


@pytest.fixture
def small_heap_gateway(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    admin_port = free_port()
    gw = Gateway(tmp_path, {
        # nothing listens on port 9: the requests never get further than Envoy's buffers anyway
        "providers": {"anthropic": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "auth": "passthrough"}},
        "limits": {"envoy_max_heap_bytes": HEAP_CAP},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "timeouts": {"drain_s": 1},
    }, workers=1).start()
    yield gw, f"http://127.0.0.1:{admin_port}"
    gw.stop()


def _admin(admin: str, path: str) -> str:
    with urllib.request.urlopen(admin + path, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.read().decode()


def _open_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BODY}\r\n\r\n")
    sock.sendall(head.encode() + b'{"model":"claude-x","max_tokens":1,"messages":[{"role":"user","content":"')
    return sock


def _send_each(socks: list[socket.socket], data: bytes) -> None:
    """One round: every client sends `data`. A connection Envoy closed is left alone (its reset
    reaches the client a little later: `_closed_by_envoy`)."""
    for sock in socks:
        with contextlib.suppress(OSError):  # reset, broken pipe
            sock.sendall(data)


def _closed_by_envoy(socks: list[socket.socket]) -> list[socket.socket]:
    """The connections Envoy ended (reset, or answered and closed), waiting at most 10 s for the first."""
    readable, _, _ = select.select(socks, [], [], 10)
    closed = []
    for sock in readable:
        try:
            if sock.recv(65536, socket.MSG_PEEK) == b"":
                closed.append(sock)
        except OSError:  # reset
            closed.append(sock)
    return closed


def _overload_closes(admin: str) -> int:
    stats = _admin(admin, "/stats?filter=http.lunaroute.downstream_rq_overload_close")
    return int(stats.split(":")[1])


def test_trickled_http1_bodies_are_shed_past_the_heap_cap(small_heap_gateway) -> None:
    gw, admin = small_heap_gateway

    def heap() -> int:
        return int(json.loads(_admin(admin, "/memory"))["allocated"])

    socks = [_open_request(gw.port) for _ in range(CLIENTS)]
    try:
        # slow clients: a chunk each per round, never the body's last bytes
        for _ in range(BODY // CHUNK - 1):
            _send_each(socks, b"a" * CHUNK)
            time.sleep(0.05)
        # and they keep sending a little: whoever sends while the heap is past 95 % is shed
        for _ in range(100):
            if heap() < 0.95 * HEAP_CAP:
                break
            _send_each(socks, b"a" * 1024)
            time.sleep(0.1)
        held = heap()
        shed = _overload_closes(admin)
        closed = _closed_by_envoy(socks)
    finally:
        for sock in socks:
            sock.close()
    # the overload manager closed some (not a timeout, not the client), and the heap is under its cap
    assert shed >= 1 and closed
    assert held < 0.95 * HEAP_CAP
    status, _, _ = gw.get("/healthz")
    assert status == 200  # serving again
