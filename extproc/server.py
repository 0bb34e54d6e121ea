"""The gRPC ext_proc servicer: moves Envoy's messages in and out of an `Exchange`, nothing more.

One bidirectional stream per HTTP request. Header values arrive in `raw_value` (bytes). Any
failure inside the pipeline becomes an error in the client's dialect; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from time import perf_counter

import grpc
from grpc_health.v1 import _async as health_aio  # pyright: ignore[reportAttributeAccessIssue] - `health.aio`, not in the stubs
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._proto import access_log_pb2_grpc
from ._proto import ext_proc_pb2 as pb
from ._proto import ext_proc_pb2_grpc as pb_grpc
from .actions import ProcessingStream, Reply
from .attempts import AttemptExchange
from .config import Config, ExtProcTLS
from .exchange import Exchange
from .gateway import Gateway
from .metering import UsageReceiver
from .observe import metrics
from .responses import ResponseTranslation
from .spent import SPENT_FILE_ENV, SpentWatch
from .wire import ATTEMPT_PROVIDER_METADATA, GATE_METADATA, GATE_SEALED

log = logging.getLogger("lunaroute")

_MODES = {"NONE": pb.ProcessingMode.NONE, "BUFFERED": pb.ProcessingMode.BUFFERED,
          "STREAMED": pb.ProcessingMode.STREAMED, "FULL_DUPLEX_STREAMED": pb.ProcessingMode.FULL_DUPLEX_STREAMED}
_HEADER_MODES = {"SEND": pb.ProcessingMode.SEND, "SKIP": pb.ProcessingMode.SKIP}
_OVERWRITE = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def headers_dict(header_map: pb.HeaderMap) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in header_map.headers:
        out[h.key] = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return out


def _mutation(reply: Reply) -> pb.HeaderMutation | None:
    if not reply.set_headers and not reply.remove_headers:
        return None
    return pb.HeaderMutation(
        set_headers=[
            pb.HeaderValueOption(header=pb.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE)
            for k, v in reply.set_headers.items()
        ],
        remove_headers=reply.remove_headers,
    )


def _common(reply: Reply) -> pb.CommonResponse:
    common = pb.CommonResponse(clear_route_cache=reply.clear_route_cache)
    mutation = _mutation(reply)
    if mutation is not None:
        common.header_mutation.CopyFrom(mutation)
    if reply.end_of_stream is not None:
        streamed = common.body_mutation.streamed_response
        streamed.body = reply.body or b""
        streamed.end_of_stream = reply.end_of_stream
    elif reply.body is not None:
        common.body_mutation.body = reply.body
    return common


def to_proto(phase: str, reply: Reply) -> pb.ProcessingResponse:
    """Our `Reply` for one phase as Envoy's ProcessingResponse."""
    if reply.immediate is not None:
        imm = reply.immediate
        resp = pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
            status=pb.HttpStatus(code=imm.status),  # pyright: ignore[reportArgumentType] - an enum on the wire: any code
            body=imm.body, details=imm.details))
        for k, v in imm.headers.items():
            resp.immediate_response.headers.set_headers.append(
                pb.HeaderValueOption(header=pb.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE))
        return resp
    resp = pb.ProcessingResponse()
    if phase in ("request_trailers", "response_trailers"):  # never asked for; answered harmlessly
        getattr(resp, phase).SetInParent()
        return resp
    common = _common(reply)
    getattr(resp, phase).response.CopyFrom(common)  # a HeadersResponse or a BodyResponse, by phase
    if reply.request_body_mode or reply.response_body_mode or reply.response_header_mode:
        mode = resp.mode_override
        if reply.request_body_mode:
            mode.request_body_mode = _MODES[reply.request_body_mode]
        if reply.response_header_mode:
            mode.response_header_mode = _HEADER_MODES[reply.response_header_mode]
        if reply.response_body_mode:
            mode.response_body_mode = _MODES[reply.response_body_mode]
    return resp


def stream_authenticated(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> bool:
    """Whether the peer of this stream proved it is our Envoy: it came over a Unix socket (only who can
    open the socket file — the containers sharing its volume), or its TLS handshake presented a client
    certificate our CA signed (`ssl_server_credentials(require_client_auth=True)` refuses any other).
    Plain TCP proves nothing: any pod (or, in a pod, any container) that reaches the port could say
    anything in its metadata."""
    if context.peer().startswith("unix:"):
        return True
    return bool(context.auth_context().get("x509_pem_cert"))


def exchange_for(gateway: Gateway, metadata, authenticated: bool) -> Exchange | AttemptExchange:  # noqa: ANN001
    """The request phase's exchange, or, on a provider cluster's per-attempt filter (which names its
    provider in the stream's metadata), one attempt of a fallback chain. Envoy's filter config sets
    this metadata; a client of Envoy cannot. Neither is believed from a peer that is not
    `authenticated`: its stream is a mesh's (never sealed; refused when gateway keys are configured),
    so it can neither pass as the gate nor charge a provider's attempt."""
    sealed = False
    attempt = None
    for key, value in (metadata or ()) if authenticated else ():
        if key == ATTEMPT_PROVIDER_METADATA and value in gateway.cfg.providers:
            attempt = value
        elif key == GATE_METADATA:
            sealed = value == GATE_SEALED
    if attempt is not None:
        return AttemptExchange(gateway, attempt)
    return Exchange(gateway, sealed=sealed)


# Bodies at least this large are handled in a thread: parsing and translating megabytes must not stall
# every other stream of the worker (the thread still shares the GIL, but the event loop gets its turns).
LARGE_BODY_BYTES = 1 << 20


def translated_stream(exchange: ProcessingStream) -> ResponseTranslation | None:
    """The translated SSE stream this exchange is in the middle of, if any: its provider's silence is
    watched (only a translated stream can be ended with an error event; Envoy passes the others on)."""
    response = exchange.response
    return response if isinstance(response, ResponseTranslation) and response.streaming else None


def handle(exchange: ProcessingStream, req: pb.ProcessingRequest) -> tuple[str, Reply]:
    """Dispatch one message to the exchange; any exception becomes an error reply."""
    phase = req.WhichOneof("request")
    try:
        if phase == "request_headers":
            msg = req.request_headers
            return phase, exchange.on_request_headers(headers_dict(msg.headers), msg.end_of_stream)
        if phase == "request_body":
            return phase, exchange.on_request_body(req.request_body.body)
        if phase == "response_headers":
            return phase, exchange.on_response_headers(headers_dict(req.response_headers.headers))
        if phase == "response_body":
            msg = req.response_body
            return phase, exchange.on_response_body(msg.body, msg.end_of_stream)
        return phase or "request_trailers", Reply()  # trailers are not requested; answer harmlessly
    except Exception:  # noqa: BLE001 - the server must keep serving whatever a request does
        if phase in ("request_headers", "request_body"):
            return phase, exchange.internal_error(phase)
        log.exception("internal error in phase %s; passing the response on unchanged", phase)
        return phase or "unknown", Reply()


def step(exchange: ProcessingStream, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
    """One message in, one message out, timed per phase."""
    started = perf_counter()
    phase, reply = handle(exchange, req)
    response = to_proto(phase, reply)
    metrics.PHASE_SECONDS.labels(phase).observe(perf_counter() - started)
    return response


async def admitted(exchange: ProcessingStream, response: pb.ProcessingResponse) -> pb.ProcessingResponse:
    """Budgets before the request leaves, asked of the store in the budgets' threads and awaited at
    most `budgets.timeout_ms` (a slow store fails open): the request phase reserves its estimate; an
    attempt of a fallback chain checks that its own provider has not spent a budget. A spent budget
    turns the answer into a 429."""
    budgets = exchange.gw.budgets  # type: ignore[attr-defined]
    if budgets is None:
        return response
    if isinstance(exchange, Exchange):
        res = exchange.reservation
        if res is None or res.checked:
            return response
        res.checked = True
        call, args, phase = budgets.reserve, (res,), "request_body"
    elif isinstance(exchange, AttemptExchange) and exchange.budget_check is not None:
        call, args, phase = budgets.check, exchange.budget_check, "request_headers"
        exchange.budget_check = None
    else:
        return response
    loop = asyncio.get_running_loop()
    try:
        refusal = await asyncio.wait_for(loop.run_in_executor(budgets.executor, call, *args), budgets.timeout_s)
    except TimeoutError:
        metrics.BUDGET_STORE_ERRORS.labels("timeout").inc()
        return response
    return response if refusal is None else to_proto(phase, exchange.over_budget(refusal))  # type: ignore[attr-defined]


def closed(exchange: ProcessingStream) -> None:
    """The stream is over (finished, cancelled or cut): let the exchange settle what is still open."""
    if isinstance(exchange, Exchange):
        try:
            exchange.close()
        except Exception:  # noqa: BLE001 - closing must never take the worker down
            log.exception("could not close an exchange")


def _large(req: pb.ProcessingRequest) -> bool:
    phase = req.WhichOneof("request")
    return phase in ("request_body", "response_body") and len(getattr(req, phase).body) >= LARGE_BODY_BYTES


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):
    """The grpc.aio servicer the workers run."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def Process(self, request_iterator, context):  # noqa: N802 - gRPC method name
        exchange = exchange_for(self.gateway, context.invocation_metadata(), stream_authenticated(context))
        idle_s = self.gateway.cfg.timeouts.stream_idle_s
        requests = aiter(request_iterator)
        try:
            while True:
                stream = translated_stream(exchange)
                try:
                    req = await (asyncio.wait_for(anext(requests), idle_s) if stream else anext(requests))
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    # The provider went silent mid-stream: end the client's stream with an error event
                    # before Envoy's idle timeout would cut the connection (see envoy_config.STALL_GRACE_S).
                    assert stream is not None  # only a translated stream is awaited with a timeout
                    yield to_proto("response_body", stream.stalled(idle_s))
                    return
                if _large(req):
                    response = await asyncio.get_running_loop().run_in_executor(None, step, exchange, req)
                else:
                    response = step(exchange, req)
                response = await admitted(exchange, response)
                yield response
        finally:
            closed(exchange)


def grpc_options(cfg: Config) -> list[tuple[str, int]]:
    size = cfg.extproc.max_message_bytes
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def server_credentials(tls: ExtProcTLS) -> grpc.ServerCredentials:
    """The worker's certificate, and the CA a client's certificate must chain to (client auth required)."""
    def read(path: str) -> bytes:
        return Path(path).read_bytes()

    return grpc.ssl_server_credentials([(read(tls.key_file), read(tls.cert_file))],
                                       root_certificates=read(tls.client_ca_file), require_client_auth=True)


def listen(server: grpc.aio.Server, cfg: Config, index: int) -> list[str]:
    """Open worker `index`'s addresses: its Unix socket (`extproc.socket_dir`), TCP with mutual TLS
    (`extproc.tls`), both, or — neither configured — plain TCP, whose streams are never trusted."""
    ep = cfg.extproc
    tcp = f"{ep.listen_host}:{ep.port + index}"
    opened: list[tuple[str, int]] = []
    if ep.tls is not None:
        opened.append((tcp, server.add_secure_port(tcp, server_credentials(ep.tls))))
    if ep.socket_dir:
        unix = f"unix:{ep.socket_path(index)}"
        opened.append((unix, server.add_insecure_port(unix)))
    if not opened:
        log.warning("ext_proc worker on plain TCP %s: its streams are not authenticated, so none passes as the "
                    "gateway's gate (set extproc.socket_dir or extproc.tls; README: Security)", tcp)
        opened.append((tcp, server.add_insecure_port(tcp)))
    for address, port in opened:
        if not port:
            raise OSError(f"cannot listen on {address}")
    return [address for address, _ in opened]


async def serve(cfg: Config, port: int, drain_s: float = 10.0, restarted: bool = False) -> None:
    """Run one worker until SIGTERM/SIGINT, then drain: health NOT_SERVING, finish open streams.
    `restarted`: the supervisor started it again after a death (counted in the metrics)."""
    health_servicer = health_aio.HealthServicer()
    serving = {"ok": True}
    gateway = Gateway(cfg, healthy=lambda: serving["ok"])
    server = grpc.aio.server(options=grpc_options(cfg))
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(gateway), server)
    # Envoy's fast path is settled from its access log (`metering`); spent budgets go back to Envoy
    spent_file = os.environ.get(SPENT_FILE_ENV)
    limited = gateway.budgets is not None or gateway.ledger.windows is not None
    spent = SpentWatch(cfg, gateway.budgets, gateway.ledger.windows, Path(spent_file)) if spent_file and limited \
        else None
    access_log_pb2_grpc.add_AccessLogServiceServicer_to_server(
        UsageReceiver(gateway, spent, authenticated=stream_authenticated), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = " and ".join(listen(server, cfg, port - cfg.extproc.port))
    await server.start()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    log.info("ext_proc worker listening on %s%s", address, " (restarted)" if restarted else "")
    if restarted:
        metrics.WORKER_RESTARTS.inc()
    if spent is not None:
        spent.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    serving["ok"] = False
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    log.info("ext_proc worker on %s draining", address)
    await server.stop(grace=drain_s)
    if spent is not None:
        spent.stop()
    await asyncio.to_thread(gateway.close)  # flush queued session records, off the event loop


async def _set_health(servicer: health_aio.HealthServicer, status: int) -> None:
    for service in ("", "envoy.service.ext_proc.v3.ExternalProcessor"):
        await servicer.set(service, status)
