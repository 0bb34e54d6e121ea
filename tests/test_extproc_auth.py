"""Who may speak for the gateway's gate on the ext_proc port (issue 23: a pod that reached the gRPC port
claimed `x-lunaroute-gate: sealed` and charged a key's budget).

Real grpc.aio servers built by the workers' own `listen()`, real channels: plain TCP (anyone who reaches
it), a Unix socket (only who can open the file) and mutual TLS with certificates made for the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc import config
from extproc._proto import ext_proc_pb2 as pb
from extproc._proto import ext_proc_pb2_grpc as pb_grpc
from extproc.attempts import AttemptExchange
from extproc.cli import _with_overrides, parser
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.probe import serving
from extproc.server import ExternalProcessor, exchange_for, grpc_options, listen
from extproc.wire import ATTEMPT_PROVIDER_METADATA, CLIENT_HEADER, GATE_METADATA
from tests.certs import CertificateAuthority
from tests.mock_providers import free_port

SEALED = ((GATE_METADATA, "sealed"),)
KEYED = {"keys": [{"name": "alice", "key_sha256": "ab" * 32}]}


def worker_config(access: dict | None = None, **extproc: object) -> config.Config:
    return config.parse({
        "providers": {"anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"}},
        "access": access or {},
        "extproc": {"host": "127.0.0.1", "port": free_port(), **extproc},
    }, env={})


def request_headers(path: str, method: str = "GET", **extra: str) -> pb.ProcessingRequest:
    pairs = {":method": method, ":path": path, **extra}
    hm = pb.HeaderMap(headers=[pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=hm, end_of_stream=True))


async def first_reply(channel: grpc.aio.Channel, request: pb.ProcessingRequest,
                       metadata: tuple[tuple[str, str], ...] = SEALED) -> pb.ProcessingResponse:
    async def one() -> AsyncIterator[pb.ProcessingRequest]:
        yield request

    stub = pb_grpc.ExternalProcessorStub(channel)
    return [r async for r in stub.Process(one(), metadata=metadata, timeout=10)][0]


class Worker:
    """One worker's gRPC server, opened exactly as `serve()` opens it."""

    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        self.gateway = Gateway(cfg)
        self.server = grpc.aio.server(options=grpc_options(cfg))
        pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(self.gateway), self.server)
        self.addresses = listen(self.server, cfg, 0)

    async def __aenter__(self) -> Worker:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(None)
        self.gateway.close()


def metrics_answered(reply: pb.ProcessingResponse) -> bool:
    """A sealed stream's `/metrics` is the gateway's own endpoint (answered by the worker); an unsealed
    one's belongs to the app behind a mesh and passes through."""
    return reply.WhichOneof("response") == "immediate_response" and reply.immediate_response.status.code == 200


async def test_a_plain_tcp_peer_claiming_the_gate_is_not_sealed() -> None:
    async with Worker(worker_config()) as worker:
        assert worker.addresses == [f"127.0.0.1:{worker.cfg.extproc.port}"]
        async with grpc.aio.insecure_channel(worker.addresses[0]) as channel:
            reply = await first_reply(channel, request_headers("/metrics"))
    assert not metrics_answered(reply)
    assert reply.request_headers.response.header_mutation.set_headers == []


async def test_with_gateway_keys_a_plain_tcp_peer_is_refused() -> None:
    """The forged stream names a key, as the gate would; it is refused in the headers phase, before any
    budget is reserved or record written."""
    async with Worker(worker_config(access=KEYED)) as worker:
        async with grpc.aio.insecure_channel(worker.addresses[0]) as channel:
            reply = await first_reply(channel, request_headers("/v1/messages", "POST", **{CLIENT_HEADER: "alice"}))
        assert reply.immediate_response.status.code == 503
        assert b"gateway keys are configured" in reply.immediate_response.body


async def test_a_unix_socket_peer_is_the_gateways_envoy(tmp_path: Path) -> None:
    cfg = worker_config(socket_dir=str(tmp_path))
    async with Worker(cfg) as worker:
        assert worker.addresses == [f"unix:{tmp_path}/worker-0.sock"]
        async with grpc.aio.insecure_channel(worker.addresses[0]) as channel:
            assert metrics_answered(await first_reply(channel, request_headers("/metrics")))
            assert not metrics_answered(await first_reply(channel, request_headers("/metrics"), metadata=()))


@pytest.fixture
def mtls(tmp_path: Path) -> tuple[config.Config, CertificateAuthority]:
    ca = CertificateAuthority("lunaroute ext_proc CA")
    server = ca.issue("lunaroute-extproc", server=True)
    for name, data in (("ca.crt", ca.pem), ("tls.crt", server.cert), ("tls.key", server.key)):
        (tmp_path / name).write_bytes(data)
    tls = {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key"),
           "client_ca_file": str(tmp_path / "ca.crt")}
    return worker_config(tls=tls, socket_dir=str(tmp_path)), ca


async def test_mtls_a_client_with_the_cas_certificate_is_sealed(mtls) -> None:
    cfg, ca = mtls
    client = ca.issue("envoy", server=False)
    async with Worker(cfg) as worker:
        tcp = f"127.0.0.1:{cfg.extproc.port}"
        assert worker.addresses == [tcp, f"unix:{cfg.extproc.socket_path(0)}"]
        creds = grpc.ssl_channel_credentials(root_certificates=ca.pem, private_key=client.key,
                                             certificate_chain=client.cert)
        async with grpc.aio.secure_channel(tcp, creds) as channel:
            assert metrics_answered(await first_reply(channel, request_headers("/metrics")))


@pytest.mark.parametrize("client", ["no certificate", "another CA's certificate", "plain text"])
async def test_mtls_refuses_every_other_client(mtls, client: str) -> None:
    cfg, ca = mtls
    stranger = CertificateAuthority("someone else's CA").issue("envoy", server=False)
    async with Worker(cfg):
        target = f"127.0.0.1:{cfg.extproc.port}"
        if client == "plain text":
            channel = grpc.aio.insecure_channel(target)
        else:
            pair = {"private_key": stranger.key, "certificate_chain": stranger.cert} if "another" in client else {}
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca.pem, **pair))
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await first_reply(channel, request_headers("/metrics"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_unauthenticated_peer_cannot_open_a_providers_attempt() -> None:
    gateway = Gateway(worker_config())
    try:
        metadata = [(ATTEMPT_PROVIDER_METADATA, "anthropic"), *SEALED]
        assert isinstance(exchange_for(gateway, metadata, authenticated=True), AttemptExchange)
        forged = exchange_for(gateway, metadata, authenticated=False)
        assert isinstance(forged, Exchange) and not forged.sealed
    finally:
        gateway.close()


def test_serve_options_set_the_workers_socket_and_mutual_tls(tmp_path: Path) -> None:
    args = parser().parse_args(["serve", "--socket-dir", str(tmp_path), "--tls-cert", "/c/tls.crt",
                                "--tls-key", "/c/tls.key", "--tls-client-ca", "/c/ca.crt"])
    ep = _with_overrides(worker_config(), args).extproc
    assert ep.socket_dir == str(tmp_path)
    assert ep.tls == config.ExtProcTLS(cert_file="/c/tls.crt", key_file="/c/tls.key", client_ca_file="/c/ca.crt")
    with pytest.raises(config.ConfigError, match="--tls-client-ca go together"):
        _with_overrides(worker_config(), parser().parse_args(["serve", "--tls-cert", "/c/tls.crt"]))


async def test_the_probe_reads_a_unix_socket_workers_health(tmp_path: Path) -> None:
    """What the chart's exec probes run (kubelet's gRPC probe cannot reach a Unix socket)."""
    server = grpc.aio.server()
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    address = f"unix:{tmp_path}/worker-0.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        await checks.set("", health_pb2.HealthCheckResponse.SERVING)
        assert await asyncio.to_thread(serving, address)
        await checks.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert not await asyncio.to_thread(serving, address)
    finally:
        await server.stop(None)
    assert not await asyncio.to_thread(serving, address, 0.5)
