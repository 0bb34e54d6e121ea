"""Faults through the real Envoy: the gateway stays up for everyone, and whoever is hurt hears why.

Every test is bounded in time; each gateway it starts, it stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES, Gateway, standard_config
from tests.mock_providers import MockAnthropic, MockOpenAI
from tests.processes import children, envoy_pid, worker_pids

pytestmark = pytest.mark.e2e

HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-user", "anthropic-version": "2023-06-01"}


def _envoy_pid(gw: Gateway) -> int:
    return envoy_pid(gw.proc.pid)


def _workers(gw: Gateway) -> dict[int, str]:
    return worker_pids(gw.proc.pid)


@pytest.fixture()
def chain_gateway(tmp_path, anthropic_mock, openai_mock):
    """Claude models go to Anthropic with a fallback to the OpenAI-type provider."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    config["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    gw = Gateway(tmp_path, config, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    yield gw
    gw.stop()


def test_concurrent_large_requests_on_a_fallback_chain_never_crash_envoy(chain_gateway) -> None:
    """Regression: Envoy 1.40 died of SIGSEGV here about every second round (README: Known issues)."""
    envoy = _envoy_pid(chain_gateway)
    body = json.dumps({"model": "claude-x", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "x" * (4 * 1024 * 1024)}]}).encode()

    def post(_: int) -> int:
        return chain_gateway.get("/v1/messages", method="POST", body=body, headers=HEADERS)[0]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(4):
            assert list(pool.map(post, range(8))) == [200] * 8
    assert _envoy_pid(chain_gateway) == envoy
    assert "Caught Segmentation fault" not in chain_gateway.log()


def _listening(gw: Gateway, port: int) -> bool:
    """Whether the worker started with `--port port` accepts connections (on its Unix socket:
    `lunaroute up` gives the workers sockets in its runtime directory)."""
    envoy_args = children(gw.proc.pid)[envoy_pid(gw.proc.pid)].split()
    runtime = Path(envoy_args[envoy_args.index("-c") + 1]).parent
    index = port - gw.config["extproc"]["port"]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            sock.connect(str(runtime / f"worker-{index}.sock"))
        return True
    except OSError:
        return False


def _messages_body(text: str = "hi", stream: bool = False) -> bytes:
    return json.dumps({"model": "claude-x", "max_tokens": 10, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


@pytest.fixture()
def two_workers(tmp_path, anthropic_mock: MockAnthropic, openai_mock: MockOpenAI):
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url), workers=2)
    gw.start(env={"LR_TEST_OPENAI_KEY": "k"})
    yield gw
    gw.stop()


def test_killed_worker_is_restarted_and_no_request_beyond_in_flight_fails(two_workers) -> None:
    gw = two_workers
    results: list[tuple[float, int | str, bytes]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                # a marker: every request needs a worker (plain passthroughs take the fast path)
                status, _, body = gw.get("/v1/messages", method="POST", body=_messages_body("[LUNAROUTE:clear] hi"),
                                         headers=HEADERS)
            except OSError as exc:
                status, body = repr(exc), b""
            results.append((started, status, body))

    clients = [threading.Thread(target=client) for _ in range(8)]
    for c in clients:
        c.start()
    try:
        time.sleep(1.0)
        envoy = _envoy_pid(gw)
        victim, cmd = next(iter(_workers(gw).items()))
        port = int(cmd.split("--port ")[1].split()[0])
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        back = None
        while back is None and time.monotonic() - killed < 60:
            if any(pid != victim and f"--port {port} " in cmd + " " for pid, cmd in _workers(gw).items()) \
                    and _listening(gw, port):
                back = time.monotonic() - killed
            time.sleep(0.02)
        time.sleep(1.5)  # and the load goes on
    finally:
        stop.set()
        for c in clients:
            c.join(15)
    assert back is not None, "the killed worker was not restarted"
    failed = [(started - killed, status, body) for started, status, body in results if status != 200]
    assert len(results) > 100
    # In flight: every failed request was sent before the restarted worker was back (order, not a
    # threshold: a loaded machine stretches both alike).
    assert all(after < back for after, _, _ in failed), failed
    assert len(failed) <= 16, failed
    for _, status, body in failed:  # and even those hear why, in their dialect
        assert status == 503 and json.loads(body)["error"]["type"] == "overloaded_error", (status, body)
    assert gw.proc.poll() is None and _envoy_pid(gw) == envoy
    assert f"(port {port}) exited with code -9; restarting it" in gw.log()
    _, _, metrics = gw.get("/metrics")
    assert "lunaroute_worker_restarts_total 1.0" in metrics.decode()


def test_with_every_worker_down_api_paths_get_a_503_in_their_dialect_and_bypass_works(
        tmp_path, anthropic_mock: MockAnthropic, openai_mock: MockOpenAI) -> None:
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["extproc"] = {"message_timeout_ms": 1000}
    gw = Gateway(tmp_path, config, workers=2).start(env={"LR_TEST_OPENAI_KEY": "k"})
    workers = list(_workers(gw))
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # alive to the supervisor, silent to Envoy
    try:
        # at once (a stuck worker misses the 1 s message timeout), and once Envoy's health checks gave up;
        # a marked request needs a worker (a plain passthrough does not: the fast path serves it, below)
        for _ in range(2):
            status, _, body = gw.get("/v1/messages", method="POST", body=_messages_body("[LUNAROUTE:gpt] hi"),
                                     headers=HEADERS)
            assert status == 503
            err = json.loads(body)
            assert err["type"] == "error" and err["error"]["type"] == "overloaded_error"
            assert "request processor is unavailable" in err["error"]["message"]
            time.sleep(1.5)

        status, _, body = gw.get("/v1/chat/completions", method="POST", body=json.dumps(
            {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"content-type": "application/json", "authorization": "Bearer k"})
        assert status == 503
        err = json.loads(body)["error"]
        assert err["type"] == "server_error" and err["code"] == "processor_unavailable"
        assert "request processor is unavailable" in err["message"]

        status, _, body = gw.get("/v1/embeddings", method="POST", body=b'{"model":"e","input":"hi"}',
                                 headers={"content-type": "application/json"})
        assert status == 200 and json.loads(body)["data"]
        status, _, body = gw.get("/v1/messages", method="POST", body=_messages_body(), headers=HEADERS)
        assert status == 200, body  # Claude Code's plain requests never needed a worker
        assert gw.get("/healthz")[0] == 200
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        status, deadline = 0, time.monotonic() + 10
        while status != 200 and time.monotonic() < deadline:  # and it is back once they are
            status = gw.get("/v1/messages", method="POST", body=_messages_body("[LUNAROUTE:gpt] hi"),
                            headers=HEADERS)[0]
            time.sleep(0.1)
        assert status == 200
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        gw.stop()


def _raw_exchange(gw: Gateway, request: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP client library would send; the status and JSON body Envoy answers."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


SMALL = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 65536 + b"\r\ncontent-length: 79\r\n\r\n" + SMALL,
     431),
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(150))
     + b"content-length: 79\r\n\r\n" + SMALL, 431),
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 79\r\ncontent-length: 3\r\n\r\n" + SMALL, 400),
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 79\r\ntransfer-encoding: chunked\r\n\r\n" + SMALL,
     400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-a: \x00\r\ncontent-length: 79\r\n\r\n" + SMALL, 400),
], ids=["64KB-header", "150-headers", "two-content-lengths", "content-length-and-chunked", "NUL-in-header"])
def test_requests_the_codec_rejects_are_answered_not_dropped(gateway, request_bytes: bytes, status: int) -> None:
    got, body = _raw_exchange(gateway, request_bytes)
    assert got == status
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"  # both SDKs read it


def _openai_chunks(words: list[str]) -> list[bytes]:
    base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock"}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                                      ).encode() + b"\n\n"

    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": w}) for w in words),
            chunk({}, "stop"), b"data: [DONE]\n\n"]


def test_sigterm_lets_an_in_flight_translated_stream_finish(tmp_path, anthropic_mock, openai_mock) -> None:
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["default_provider"] = "gpt"  # Anthropic client, OpenAI provider: every chunk needs a worker
    gw = Gateway(tmp_path, config, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    words = [f"w{i} " for i in range(12)]
    openai_mock.stream_next(_openai_chunks(words), pause_s=0.5)  # about 6 s
    client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0)
    received: list[str] = []
    try:
        with client.messages.stream(model="claude-x", max_tokens=50,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            for text in stream.text_stream:
                received.append(text)
                if len(received) == 2:
                    gw.proc.send_signal(signal.SIGTERM)
            final = stream.get_final_message()
        assert "".join(received) == "".join(words)
        assert final.stop_reason == "end_turn"
        assert gw.proc.wait(30) == 0
        assert "draining 1 in-flight request(s)" in gw.log()
    finally:
        gw.stop()


@pytest.fixture()
def impatient_gateway(tmp_path, anthropic_mock, openai_mock):
    """Streams whose provider stays silent for a second are ended; Claude models have a fallback."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["timeouts"] = {"stream_idle_s": 1}
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    config["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    gw = Gateway(tmp_path, config, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    yield gw
    gw.stop()


def test_a_stalled_provider_ends_a_translated_anthropic_stream_with_an_error_event(impatient_gateway,
                                                                                   openai_mock) -> None:
    openai_mock.stream_next(_openai_chunks(["partial ", "answer"])[:3], stall=True)  # no finish, no [DONE]
    client = anthropic.Anthropic(base_url=impatient_gateway.url, api_key="sk-ant-user", max_retries=0)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err, client.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]) as stream:
        received.extend(stream.text_stream)
    # the gateway's error event, not Envoy's idle timeout cutting the connection (that would raise
    # a connection error with no body)
    assert received == ["partial ", "answer"]
    assert err.value.body["error"]["type"] == "overloaded_error"
    assert "sent nothing for 1s" in err.value.body["error"]["message"]
    assert "ended the stream with an error event" in impatient_gateway.log()


def test_a_stalled_provider_ends_a_translated_openai_stream_with_an_error_chunk(impatient_gateway,
                                                                                anthropic_mock) -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
             "model": "claude-x", "content": [], "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}
    anthropic_mock.stream_next([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
                                for e in (start, block, delta)], stall=True)
    client = openai.OpenAI(base_url=impatient_gateway.url + "/v1", api_key="sk-ant-user", max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(model="claude-x", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == ["partial"]
    assert "sent nothing for 1s" in err.value.message


def test_a_fallback_provider_that_stalls_ends_the_stream_with_an_error_event_too(impatient_gateway, anthropic_mock,
                                                                                 openai_mock) -> None:
    anthropic_mock.fail_next(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    openai_mock.stream_next(_openai_chunks(["from ", "fallback"])[:3], stall=True)
    client = anthropic.Anthropic(base_url=impatient_gateway.url, api_key="sk-ant-user", max_retries=0)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err, client.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        received.extend(stream.text_stream)
    assert received == ["from ", "fallback"]
    assert "'gpt' sent nothing for 1s" in err.value.body["error"]["message"]


# -- fuzzing ---------------------------------------------------------------------------------------

CORPUS = FIXTURES / "fuzz" / "corpus.jsonl"
CHAT_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-user"}


def _expand(value: object) -> object:
    """The corpus' shorthands for huge inputs (see tests/fixtures/fuzz/README.md)."""
    if isinstance(value, dict):
        if value.keys() == {"$repeat"}:
            text, times = value["$repeat"]
            return text * times
        if value.keys() == {"$join"}:
            return "".join(str(_expand(v)) for v in value["$join"])
        if value.keys() == {"$nest"}:
            depth, leaf = value["$nest"]
            return orjson.Fragment(b'{"a":' * depth + orjson.dumps(leaf) + b"}" * depth)
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _corpus() -> list[dict]:
    cases = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    for case in cases:
        if "json" in case:
            case["body"] = orjson.dumps(_expand(case["json"]))
        else:
            case["body"] = bytes.fromhex(case["hex"]) if "hex" in case else case["raw"].encode()
    return cases


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)
_text = st.sampled_from(["hi", "[LUNAROUTE:gpt] hi", "[LUNAROUTE:anthropic]", "[LUNAROUTE:", "[LUNAROUTE:nosuch] x",
                         "<system-reminder>[LUNAROUTE:gpt]</system-reminder> go"]) | st.text(max_size=20)
_kinds = st.sampled_from(["text", "image", "image_url", "tool_use", "tool_result", "thinking", "document"])
_block = st.fixed_dictionaries(
    {"type": _kinds | _json},
    optional={"text": _text | _json, "content": _text | _json, "input": _json, "source": _json, "id": _json,
              "name": _text | _json, "tool_use_id": _json, "image_url": _json, "thinking": _json})
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer"]) | _json,
     "content": _text | st.lists(_block, max_size=3) | _json},
    optional={"tool_calls": _json | st.lists(st.fixed_dictionaries({"id": _json, "type": _json, "function": _json})),
              "tool_call_id": _json, "reasoning_content": _json})
_prefs = st.fixed_dictionaries({}, optional={
    "order": st.lists(st.sampled_from(["gpt", "anthropic", "GPT", "nosuch"])) | _json,
    "only": st.lists(st.sampled_from(["gpt", "anthropic"])) | _json, "ignore": _json,
    "allow_fallbacks": st.booleans() | _json, "sort": st.sampled_from(["price", "latency", "throughput"]) | _json})
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=3) | _json},
    optional={"model": st.sampled_from(["claude-x", "gpt-mock", "gpt-mock-mini"]) | _json,
              "max_tokens": st.integers(-5, 2**70) | _json, "stream": st.booleans() | _json,
              "system": _text | st.lists(_block, max_size=2) | _json,
              "tools": st.lists(st.fixed_dictionaries({"name": _text, "input_schema": _json}), max_size=2) | _json,
              "provider": _prefs | _json, "tool_choice": _json, "thinking": _json, "metadata": _json,
              "stream_options": _json, "reasoning_effort": _json, "n": _json, "response_format": _json})
_request = st.tuples(st.sampled_from(["/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens"]), _body)


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory, anthropic_mock, openai_mock):
    """Two workers, fallback chains on: every path a fuzzed request can take."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    gw = Gateway(tmp_path_factory.mktemp("fuzz"), config, workers=2).start(env={"LR_TEST_OPENAI_KEY": "k"})
    yield gw
    gw.stop()


def _no_5xx(gw: Gateway, path: str, body: bytes, headers: dict, method: str = "POST") -> int:
    status, _, answer = gw.get(path, method=method, body=body or None, headers=headers)
    assert status < 500, (path, status, answer[:300], body[:300])
    return status


def test_fuzzed_requests_never_break_the_gateway(fuzz_gateway) -> None:
    gw = fuzz_gateway
    before = children(gw.proc.pid)
    statuses = [_no_5xx(gw, case["path"], case["body"], case.get("headers", HEADERS), case.get("method", "POST"))
                for case in _corpus()]

    @settings(derandomize=True, max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_request)
    def generated(request: tuple[str, dict]) -> None:
        path, body = request
        statuses.append(_no_5xx(gw, path, json.dumps(body).encode(), CHAT_HEADERS if "chat" in path else HEADERS))

    generated()
    assert statuses.count(200) >= 10 and statuses.count(400) >= 10, statuses  # deep into the pipeline too
    assert children(gw.proc.pid) == before  # no process died or was restarted
    log = gw.log()
    assert "Traceback" not in log and "restarting it" not in log
