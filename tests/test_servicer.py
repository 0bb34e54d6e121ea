"""The ext_proc servicer the workers run (grpc.aio), message by message, over a real channel on
loopback: a test sends one message and takes the answer, as Envoy would."""

from __future__ import annotations

import asyncio
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator

import grpc
import orjson
import pytest

from extproc import config
from extproc._proto import ext_proc_pb2 as pb
from extproc._proto import ext_proc_pb2_grpc as pb_grpc
from extproc.actions import Reply
from extproc.gateway import Gateway
from extproc.server import ExternalProcessor, grpc_options, to_proto
from extproc.wire import CLUSTER_HEADER, GATE_METADATA


def _cfg() -> config.Config:
    return config.parse({"providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
        "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
    }}, env={})


def headers(**kv: str) -> pb.ProcessingRequest:
    hm = pb.HeaderMap(headers=[pb.HeaderValue(key=k.replace("_", "-") if not k.startswith("_") else ":" + k[1:],
                                              raw_value=v.encode()) for k, v in kv.items()])
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=hm))


def body(doc: dict | bytes) -> pb.ProcessingRequest:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=raw, end_of_stream=True))


class Stream:
    """One ext_proc stream to a grpc.aio server running in its own thread and event loop, on a Unix
    socket as under `lunaroute up` (a peer the servicer trusts to be our Envoy)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._dir = tempfile.mkdtemp(prefix="lr-servicer-")
        self.address = f"unix:{self._dir}/w.sock"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the server did not start"
        self.channel = grpc.insecure_channel(self.address)
        self._requests: queue.Queue[pb.ProcessingRequest | None] = queue.Queue()
        stub = pb_grpc.ExternalProcessorStub(self.channel)
        self._responses = stub.Process(iter(self._requests.get, None), metadata=metadata, timeout=30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.server = grpc.aio.server(options=grpc_options(_cfg()))
        pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(Gateway(_cfg())), self.server)
        self.server.add_insecure_port(self.address)
        self._loop.run_until_complete(self.server.start())
        self._started.set()
        self._loop.run_forever()

    def send_request(self, request: pb.ProcessingRequest) -> None:
        self._requests.put(request)

    def take_response(self) -> pb.ProcessingResponse:
        return next(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _call(metadata: tuple[tuple[str, str], ...]) -> Iterator[Stream]:
    stream = Stream(metadata)
    yield stream
    stream.close()


@pytest.fixture
def rpc():
    """A stream from the gateway's own Envoy (behind the gate)."""
    yield from _call(((GATE_METADATA, "sealed"),))


@pytest.fixture
def mesh_rpc():
    """A stream from a mesh's proxy: no gate ran before the filter."""
    yield from _call(())


def _set(resp_headers: pb.HeaderMutation) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in resp_headers.set_headers}


def test_passthrough_request_sets_the_cluster_and_keeps_the_body(rpc) -> None:
    rpc.send_request(headers(_method="POST", _path="/v1/messages?beta=true", x_api_key="k"))
    first = rpc.take_response()
    assert first.WhichOneof("response") == "request_headers"
    rpc.send_request(body({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
    second = rpc.take_response()
    common = second.request_body.response
    assert common.clear_route_cache
    assert _set(common.header_mutation)[CLUSTER_HEADER] == "provider_anthropic"
    assert _set(common.header_mutation)[":path"] == "/v1/messages?beta=true"
    assert not common.HasField("body_mutation")  # exact bytes go upstream


def test_marker_routes_to_the_marked_provider_and_rewrites_the_body(rpc) -> None:
    rpc.send_request(headers(_method="POST", _path="/v1/messages", x_api_key="k"))
    rpc.take_response()
    rpc.send_request(body({"model": "claude-x", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}))
    common = rpc.take_response().request_body.response
    mutation = _set(common.header_mutation)
    assert mutation[CLUSTER_HEADER] == "provider_gpt"
    assert mutation[":path"] == "/v1/chat/completions"
    sent = orjson.loads(common.body_mutation.body)
    assert sent["model"] == "gpt-5.1"
    assert "LUNAROUTE" not in orjson.dumps(sent).decode()
    assert mutation["content-length"] == str(len(common.body_mutation.body))
    assert {"x-api-key", "authorization"} <= set(common.header_mutation.remove_headers)


def test_bad_json_is_an_immediate_anthropic_error(rpc) -> None:
    rpc.send_request(headers(_method="POST", _path="/v1/messages"))
    rpc.take_response()
    rpc.send_request(body(b"{not json"))
    imm = rpc.take_response().immediate_response
    assert imm.status.code == 400
    assert orjson.loads(imm.body)["error"]["type"] == "invalid_request_error"


def test_bad_json_on_chat_completions_is_an_openai_error(rpc) -> None:
    rpc.send_request(headers(_method="POST", _path="/v1/chat/completions"))
    rpc.take_response()
    rpc.send_request(body(b"[]"))
    imm = rpc.take_response().immediate_response
    assert imm.status.code == 400
    assert "message" in orjson.loads(imm.body)["error"]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/readyz", "/metrics", "/healthz", "/"])
def test_in_a_mesh_paths_that_are_not_ai_apis_pass_untouched(mesh_rpc, path: str) -> None:
    """The app behind the mesh owns its /readyz, /metrics and every non-AI path."""
    mesh_rpc.send_request(headers(_method="GET", _path=path))
    resp = mesh_rpc.take_response()
    assert resp.WhichOneof("response") == "request_headers"
    mode = resp.mode_override
    assert mode.request_body_mode == pb.ProcessingMode.NONE
    assert mode.response_header_mode == pb.ProcessingMode.SKIP


def test_in_a_mesh_client_sent_internal_headers_are_dropped(mesh_rpc) -> None:
    mesh_rpc.send_request(headers(_method="POST", _path="/v1/messages", x_lunaroute_client="admin",
                                  x_lunaroute_scope='{"providers":["gpt"]}'))
    mesh_rpc.take_response()
    mesh_rpc.send_request(body({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
    common = mesh_rpc.take_response().request_body.response
    assert {"x-lunaroute-client", "x-lunaroute-scope"} <= set(common.header_mutation.remove_headers)


def test_readyz_and_metrics_are_answered_by_the_worker(rpc) -> None:
    rpc.send_request(headers(_method="GET", _path="/readyz"))
    assert rpc.take_response().immediate_response.status.code == 200


def test_unknown_marker_is_routed_by_default(rpc) -> None:
    rpc.send_request(headers(_method="POST", _path="/v1/messages"))
    rpc.take_response()
    rpc.send_request(body({"model": "claude-x", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "[LUNAROUTE:nope] hi"}]}))
    common = rpc.take_response().request_body.response
    assert _set(common.header_mutation)[CLUSTER_HEADER] == "provider_anthropic"
    assert b"LUNAROUTE" not in common.body_mutation.body


async def test_aio_server_answers_over_a_real_channel() -> None:
    cfg = _cfg()
    server = grpc.aio.server(options=grpc_options(cfg))
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(Gateway(cfg)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalProcessorStub(channel)

            async def requests():
                yield headers(_method="POST", _path="/v1/messages")
                yield body({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})

            replies = [r async for r in stub.Process(requests())]
        assert [r.WhichOneof("response") for r in replies] == ["request_headers", "request_body"]
    finally:
        await server.stop(None)


def test_trailers_are_answered_even_though_never_asked_for(rpc) -> None:
    rpc.send_request(pb.ProcessingRequest(request_trailers=pb.HttpTrailers()))
    assert rpc.take_response().WhichOneof("response") == "request_trailers"


def test_a_streamed_response_body_is_sent_as_envoys_full_duplex_body() -> None:
    out = to_proto("response_body", Reply(body=b"event: error\n\n", end_of_stream=True))
    streamed = out.response_body.response.body_mutation.streamed_response
    assert streamed.body == b"event: error\n\n" and streamed.end_of_stream
