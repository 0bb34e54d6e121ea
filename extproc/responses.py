"""A translated response on its way back: JSON buffered whole, SSE translated chunk by chunk.

Same-dialect responses never come here: Envoy hands them to the client untouched, compression
and all. For translated ones the header phase picks the body mode (BUFFERED for JSON and errors,
STREAMED for SSE), drops `content-length`/`content-encoding` (the body changes size and is sent
decoded), and the body phase does the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from .actions import Reply
from .dialects import DIALECTS
from .dialects.base import Dialect, Target, Translator
from .dialects.usage import most
from .encoding import decoder
from .errors import ClientError
from .observe import metrics
from .sse import SSEParser

log = logging.getLogger("lunaroute")

def status_of(headers: dict[str, str]) -> int:
    """The response's `:status` (0 when missing or not a number)."""
    try:
        return int(headers.get(":status", "0"))
    except ValueError:
        return 0


def count_usage(provider: str, usage: dict[str, int]) -> None:
    """What a provider's answer cost, in the metrics and the log: tokens, and how many of the input
    tokens its prompt cache read or wrote (the hit ratio users watch)."""
    metrics.TOKENS.labels(provider, "input").inc(usage.get("input", 0))
    metrics.TOKENS.labels(provider, "output").inc(usage.get("output", 0))
    metrics.CACHE_TOKENS.labels(provider, "read").inc(usage.get("cache_read", 0))
    metrics.CACHE_TOKENS.labels(provider, "write").inc(usage.get("cache_write", 0))
    log.info("usage lunaroute:%s input=%d output=%d cache_read=%d cache_write=%d", provider, usage.get("input", 0),
             usage.get("output", 0), usage.get("cache_read", 0), usage.get("cache_write", 0))


class ResponseTranslation:
    def __init__(self, translator: Translator, target: Target, stream_options: dict) -> None:
        self.translator = translator
        self.target = target
        self.stream_options = stream_options
        self.mode = "json"  # json | error | stream
        self.status = 200
        self.usage: dict[str, int] = {}
        self._decoder = decoder("")
        self._buffer = bytearray()
        self._stream = None
        self._duplex = False  # body answers are full-duplex streamed responses

    @classmethod
    def for_request(cls, translator: Translator, client: Dialect, provider: Dialect, target: Target,
                    stream_options: dict) -> ResponseTranslation | None:
        """None when the response can go back untouched."""
        if client == provider:
            return None
        return cls(translator, target, stream_options)

    def on_headers(self, status: int, headers: dict[str, str]) -> Reply:
        self.status = status
        try:
            self._decoder = decoder(headers.get("content-encoding", ""))
        except ValueError:
            log.warning("provider answered with content-encoding %r; passing it on untranslated",
                        headers.get("content-encoding"))
            self.mode = "raw"
            return Reply()
        ctype = headers.get("content-type", "")
        reply = Reply(remove_headers=["content-length", "content-encoding"])
        if status >= 400:
            self.mode = "error"
            reply.response_body_mode = "BUFFERED"
        elif ctype.startswith("text/event-stream"):
            self.mode = "stream"
            self._stream = self.translator.stream(self.target, **self.stream_options)
            # Full duplex, not STREAMED: the gateway may end the client's stream by itself (`stalled`).
            reply.response_body_mode = "FULL_DUPLEX_STREAMED"
            self._duplex = True
        else:
            self.mode = "json"
            reply.response_body_mode = "BUFFERED"
        return reply

    @property
    def streaming(self) -> bool:
        """In the middle of a translated SSE stream."""
        return self.mode == "stream"

    def on_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        reply = self._body_reply(chunk, end_of_stream)
        if self._duplex:
            reply.end_of_stream = end_of_stream
        return reply

    def stalled(self, idle_s: float) -> Reply:
        """The provider sent nothing for `idle_s` mid-stream: end the client's stream with its
        dialect's error event (what SDKs raise as an API error, not a cut connection)."""
        stream_error = DIALECTS[self.translator.client].stream_error
        self.mode = "failed"
        metrics.CLIENT_ERRORS.labels("provider_stalled").inc()
        log.warning("lunaroute:%s sent nothing for %gs mid-stream; ended the stream with an error event",
                    self.target.name, idle_s)
        message = (f"the provider {self.target.name!r} sent nothing for {idle_s:g}s in the middle of the stream "
                   "(timeouts.stream_idle_s); the gateway ended it")
        return Reply(body=stream_error(503, message), end_of_stream=True)

    def _body_reply(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self.mode == "failed":
            return Reply(body=b"")  # the client already has its error; drop the rest
        try:
            return self._on_body(chunk, end_of_stream)
        except Exception as exc:  # noqa: BLE001 - never pass untranslated bytes on, never crash
            log.exception("could not translate the provider's response")
            return self._failed(exc)

    def _failed(self, exc: Exception) -> Reply:
        """The client gets an error in its own dialect: a stream error event mid-stream, else a 502."""
        spec = DIALECTS[self.translator.client]
        error_body, stream_error = spec.error_body, spec.stream_error
        message = exc.message if isinstance(exc, ClientError) else (
            f"the gateway could not translate the provider's response ({type(exc).__name__})")
        streaming, self.mode = self.mode == "stream", "failed"
        if streaming:
            return Reply(body=stream_error(502, message))
        return self._whole(error_body(502, message), 502)

    def _on_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self.mode == "raw":
            return Reply()
        data = self._decoder.feed(chunk)
        if end_of_stream:
            data += self._decoder.flush()
        if self.mode == "stream":
            assert self._stream is not None
            out = self._stream.feed(data) if data else b""
            if end_of_stream:
                out += self._stream.close()
            # Known once the provider's stream has stopped, which can be before Envoy's end of stream
            # (a client that closes at its last event): read it as soon as it is there.
            if end_of_stream or self._stream.done:
                self.usage = dict(self._stream.usage)
            return Reply(body=out)
        # BUFFERED: Envoy sends the whole body once; keep a buffer anyway in case it arrives in parts.
        self._buffer += data
        if not end_of_stream:
            return Reply(body=b"")
        raw = bytes(self._buffer)
        if self.mode == "error":
            status, body = self.translator.error(self.status, raw)
            return self._whole(body, status)
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            status, body = self.translator.error(502, b"the provider sent a response that is not JSON")
            return self._whole(body, status)
        out, self.usage = self.translator.response_body(doc, self.target, self.stream_options.get("client_tools"))
        return self._whole(orjson.dumps(out), None)

    @staticmethod
    def _whole(body: bytes, status: int | None) -> Reply:
        reply = Reply(body=body)
        reply.set_headers["content-length"] = str(len(body))
        reply.set_headers["content-type"] = "application/json"
        if status is not None:
            reply.set_headers[":status"] = str(status)
        return reply


class ModelListMerge:
    """`/v1/models` from the default provider, with the other providers' configured models added, so
    a client (Claude Code's model picker) sees both. Errors pass through untouched."""

    def __init__(self, models_body: Callable[[list[str]], bytes], extra_ids: list[str]) -> None:
        self.models_body = models_body
        self.extra_ids = extra_ids
        self.usage: dict[str, int] = {}
        self._buffer = bytearray()

    def on_headers(self, status: int, headers: dict[str, str]) -> Reply:
        if status != 200 or not self.extra_ids or "json" not in headers.get("content-type", ""):
            return Reply()
        return Reply(remove_headers=["content-length", "content-encoding"], response_body_mode="BUFFERED")

    def on_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        self._buffer += chunk
        if not end_of_stream:
            return Reply(body=b"")
        try:
            doc = orjson.loads(bytes(self._buffer))
            data = doc["data"]
            known = {m.get("id") for m in data if isinstance(m, dict)}
            data += [m for m in orjson.loads(self.models_body(self.extra_ids))["data"] if m["id"] not in known]
            if "last_id" in doc and data:
                doc["last_id"] = data[-1]["id"]
            body = orjson.dumps(doc)
        except (ValueError, KeyError, TypeError, AttributeError):
            body = bytes(self._buffer)  # not the list we know: the provider's answer as it was
        reply = Reply(body=body)
        reply.set_headers["content-length"] = str(len(body))
        return reply


def _usage_only(block: bytes) -> bool:
    if b'"usage"' not in block or b'"choices"' not in block:
        return False
    payload = b"".join(line[5:].strip() for line in block.splitlines() if line.startswith(b"data:"))
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("choices") == [] and isinstance(doc.get("usage"), dict)


class UsageMeter:
    """Reads the token usage of an untranslated response without changing a byte of it (the client
    gets the provider's own encoding). Used where a budget needs the count.

    `strip_usage`: the gateway asked an OpenAI provider for `stream_options.include_usage` that the
    client did not ask for; the usage-only chunk it adds is counted and left out of the client's
    stream (the request went out with `accept-encoding: identity`, so the bytes are plain)."""

    def __init__(self, dialect: Dialect, sink: Callable[[bytes], None] | None = None,
                 strip_usage: bool = False) -> None:
        self.usage: dict[str, int] = {}
        self.usage_in = DIALECTS[dialect].usage_in  # where the dialect's body and events carry usage
        self.sink = sink  # sees the decoded bytes too (session recording), errors included
        self.strip_usage = strip_usage
        self._pending = bytearray()
        self._decoder = decoder("")
        self._sse: SSEParser | None = None
        self._buffer = bytearray()
        self._off = True

    def on_headers(self, status: int, headers: dict[str, str]) -> Reply:
        try:
            self._decoder = decoder(headers.get("content-encoding", ""))
        except ValueError:
            return Reply()  # an encoding we cannot read: not metered
        if status != 200 and self.sink is None:
            return Reply()
        self._off = False
        if headers.get("content-type", "").startswith("text/event-stream"):
            self._sse = SSEParser()
            return Reply(response_body_mode="STREAMED",
                         remove_headers=["content-length"] if self.strip_usage and status == 200 else [])
        self.strip_usage = False
        return Reply(response_body_mode="BUFFERED")

    def on_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self._off:
            return Reply()
        if self.strip_usage:
            kept = self._without_usage_chunk(chunk, end_of_stream)
            self._read(chunk, end_of_stream, kept)
            return Reply(body=kept)
        self._read(chunk, end_of_stream, None)
        return Reply()

    def _without_usage_chunk(self, chunk: bytes, end_of_stream: bool) -> bytes:
        """The stream's events as they came, less the usage-only chunk (`"choices": []`)."""
        self._pending += chunk
        out = bytearray()
        while (end := self._pending.find(b"\n\n")) >= 0:
            block = bytes(self._pending[:end + 2])
            del self._pending[:end + 2]
            if not _usage_only(block):
                out += block
        if end_of_stream:
            out += self._pending
            self._pending.clear()
        return bytes(out)

    def _read(self, chunk: bytes, end_of_stream: bool, seen: bytes | None) -> None:
        try:
            data = self._decoder.feed(chunk) + (self._decoder.flush() if end_of_stream else b"")
            if self.sink is not None:
                self.sink(data if seen is None else seen)
            if self._sse is not None:
                for event in self._sse.feed(data):
                    self._count(event.data)
            else:
                self._buffer += data
                if end_of_stream:
                    self._count(bytes(self._buffer))
        except Exception:  # noqa: BLE001 - metering must never disturb the response
            log.debug("could not read usage from a response", exc_info=True)
            self._off = not self.strip_usage  # a stripping meter still has to pass the stream on

    def _count(self, payload: str | bytes) -> None:
        if payload in ("[DONE]", b"[DONE]", "", b""):
            return
        doc = orjson.loads(payload)
        if not isinstance(doc, dict):
            return
        most(self.usage, self.usage_in(doc))  # streams repeat cumulative counts: the largest of each
