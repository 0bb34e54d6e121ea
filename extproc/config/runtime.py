"""Where the gateway listens and how it runs: Envoy's listener and admin, the ext_proc workers, size and
concurrency limits, timeouts, retries."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from .base import _Model


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class Admin(_Model):
    """Envoy's admin interface; loopback only unless you really mean it. `socket`: a Unix socket
    (mode 0600) instead, so nothing sharing the network namespace (an app container beside a sidecar)
    can reach it."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (written to the runtime dir)
    socket: str | None = None


class ExtProcTLS(_Model):
    """Mutual TLS for workers that Envoy reaches over a network (the Helm chart's mesh mode): only a
    client holding a certificate signed by `client_ca_file` completes the handshake, so no other pod
    can open a stream (README: Security). PEM files, read when a worker starts."""

    cert_file: str
    key_file: str
    client_ca_file: str


class ExtProc(_Model):
    """Where the Python workers listen. Worker *i* listens on `port + i`; Envoy balances across them."""

    host: str = "127.0.0.1"  # where Envoy connects to the workers
    bind_host: str | None = None  # where the workers listen, when that differs (containers: 0.0.0.0)
    port: int = Field(default=50051, ge=1, le=65535)
    workers: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)), ge=1, le=64)  # 1 per core
    message_timeout_ms: int = Field(default=10_000, ge=100)
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=4 * 1024 * 1024)


    # Workers listen on Unix sockets `<socket_dir>/worker-<i>.sock` instead of TCP: cheaper per message
    # and out of reach of anything but this user. `lunaroute up` uses its private runtime directory.
    socket_dir: str | None = None
    # TCP with mutual TLS (as well as `socket_dir`'s sockets, which then serve local health probes only).
    tls: ExtProcTLS | None = None

    @property
    def listen_host(self) -> str:
        return self.bind_host or self.host

    def worker_address(self, index: int) -> str:
        """Where worker `index` listens, as gRPC writes it."""
        if self.socket_dir:
            return f"unix:{self.socket_path(index)}"
        return f"{self.listen_host}:{self.port + index}"

    def socket_path(self, index: int) -> str:
        return f"{self.socket_dir}/worker-{index}.sock"


class Limits(_Model):
    """Bounds that keep hostile or careless clients from exhausting the gateway."""

    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024)
    # Envoy's heap: past 85 % the streams holding most memory are reset, past 95 % new requests get 503.
    envoy_max_heap_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)
    max_connections: int = Field(default=4096, ge=16)  # open client connections, in total
    max_streams_per_connection: int = Field(default=128, ge=1)  # concurrent HTTP/2 streams of one client connection
    # Requests in the workers' hands at once (each holds its buffered body): beyond it Envoy refuses at
    # once, before reading the body. Buffered memory stays below about this × max_request_bytes.
    max_concurrent_requests: int = Field(default=1024, ge=1)
    # Larger bodies always go through Python (bounded by max_concurrent_requests), never the fast path.
    fast_path_max_bytes: int = Field(default=8 * 1024 * 1024, ge=0)


class Timeouts(_Model):
    connect_s: float = Field(default=10.0, gt=0)
    # A stream that sends nothing for this long is cut; long thinking pauses need minutes.
    stream_idle_s: float = Field(default=600.0, gt=0)
    # On SIGTERM, how long in-flight requests (streams) may take to finish before everything stops.
    drain_s: float = Field(default=30.0, ge=0)
    # A client must have sent its whole request (headers and body) within this: a body that trickles
    # or stalls would otherwise hold an ext_proc slot (`limits.max_concurrent_requests`) for good.
    # 120 s carries a 32 MiB body (`limits.max_request_bytes`) at 2.3 Mbit/s, a 5 MB Claude Code
    # request at 0.35 Mbit/s; the response (a stream of minutes) is not part of it. 408 when it passes.
    request_s: float = Field(default=120.0, gt=0)
    # A client connection with no request in flight is closed after this (it holds a place under
    # `limits.max_connections` otherwise).
    idle_connection_s: float = Field(default=300.0, gt=0)


class Retries(_Model):
    num_retries: int = Field(default=2, ge=0, le=10)
    retry_on_status: list[int] = [429, 503, 529]
    base_interval_ms: int = Field(default=250, ge=1)
    max_interval_ms: int = Field(default=5_000, ge=1)

    @field_validator("retry_on_status")
    @classmethod
    def _errors_only(cls, v: list[int]) -> list[int]:
        for code in v:
            if not 400 <= code <= 599:
                raise ValueError(f"{code} is not an error status; list 4xx/5xx codes such as 429, 503, 529")
        return v
