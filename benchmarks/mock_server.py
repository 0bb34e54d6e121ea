"""The benchmark's mock provider: one process, uvloop + httptools, canned answers by path.

It must never be what limits a run: measured on the project's machine it serves several times what
bare Envoy proxies through it (the benchmark measures it directly and reports both). An Envoy answering
`direct_response`s, the previous mock, served about 8.5k rps here, which capped bare Envoy's baseline
and flattered every ratio.

    python benchmarks/mock_server.py --port 9000    (answers until SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import httptools
import uvloop

STREAM_HEADER = b"x-bench-stream"  # the client asks for the SSE answer (the mock never reads bodies)


def _response(content_type: str, body: str) -> bytes:
    raw = body.encode()
    return (f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {len(raw)}\r\n\r\n").encode() + raw


class Answers:
    """The canned responses, by path and whether a stream was asked for."""

    def __init__(self, canned: dict[str, tuple[str, str]]) -> None:
        self.by_name = {name: _response(ctype, body) for name, (ctype, body) in canned.items()}

    def pick(self, path: bytes, stream: bool) -> bytes:
        if path == b"/v1/messages/count_tokens":
            return self.by_name["count"]
        if path.startswith(b"/v1/messages"):
            return self.by_name["messages_sse" if stream else "messages"]
        if path.startswith(b"/v1/chat/completions"):
            return self.by_name["chat_sse" if stream else "chat"]
        return self.by_name["embeddings"]


class MockProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; each request answered when it is complete."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.stream = b"", False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() == STREAM_HEADER:
            self.stream = True

    def on_message_complete(self) -> None:
        self.transport.write(self.answers.pick(self.url.split(b"?", 1)[0], self.stream))
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(port: int, canned: dict[str, tuple[str, str]]) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers(canned)
    server = await loop.create_server(lambda: MockProtocol(answers), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"mock listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    from bench_gateway import canned  # the same answers the benchmark has always used

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    uvloop.run(serve(ap.parse_args().port, canned()))


if __name__ == "__main__":
    main()
