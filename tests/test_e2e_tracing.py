"""Envoy's OpenTelemetry tracer, through the real gateway: with `tracing.otlp_endpoint` set, spans reach
an OTLP/HTTP collector (a small one in this test) carrying the GenAI attributes Envoy knows — the
provider that answered, the model the body named, the gateway key's name and the usage it read."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

ALICE = "lr-test-tracing-alice-0123456789ab"


class Collector:
    """OTLP/HTTP: keeps the bodies POSTed to /v1/traces (protobuf: attribute names and string values
    appear as they are)."""

    def __init__(self) -> None:
        bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self._chunked() if self.headers.get("transfer-encoding") == "chunked" else \
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    bodies.append(data)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def _chunked(self) -> bytes:
                out = b""
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()  # the chunk's CRLF
                self.rfile.readline()  # the last chunk's
                return out

            def log_message(self, *_args: object) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_trace_reaches_the_collector_with_gen_ai_attributes(tmp_path, anthropic_mock, openai_mock) -> None:
    collector = Collector()
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["access"] = {"keys": [{"name": "alice", "key_env": "LR_TEST_ALICE"}]}
    cfg["tracing"] = {"otlp_endpoint": collector.url, "sample_rate": 1.0, "service_name": "lunaroute-test"}
    gw = Gateway(tmp_path, cfg, workers=1)
    try:
        gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_TEST_ALICE": ALICE})
        claude = anthropic.Anthropic(base_url=gw.url, api_key=ALICE, max_retries=0)
        for _ in range(5):  # Envoy's exporter sends a batch every few spans or seconds
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])
        wanted = [b"lunaroute-test", b"gen_ai.provider.name", b"anthropic", b"gen_ai.request.model",
                  b"claude-sonnet-4-5", b"lunaroute.key", b"alice", b"gen_ai.usage.input_tokens", b"21",
                  b"gen_ai.usage.output_tokens"]
        for _ in range(200):  # bounded: the exporter flushes every 5 s
            if collector.bodies and all(w in b"".join(collector.bodies) for w in wanted):
                break
            time.sleep(0.1)
        seen = b"".join(collector.bodies)
        assert [w for w in wanted if w not in seen] == []
        assert ALICE.encode() not in seen  # the key's name, never the key
    finally:
        gw.stop()
        collector.stop()
