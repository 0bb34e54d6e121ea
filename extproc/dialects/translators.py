"""The three kinds of translator the registry hands out: one leg between a dialect and the hub
(`HubLeg`), two legs composed through the hub (`Composed`), and the same dialect on both sides
(`Passthrough`).

A leg is assembled from functions named by what they produce (`<out>/from_<in>`): the request goes
client → provider, the response, its stream and its errors provider → client. Whatever the pair, a
translated response reports its usage normalised from the client's dialect (`Translated`, a stream's
`usage`), so nothing downstream guesses a dialect from the keys of a body.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

import orjson

from extproc.dialects.base import (
    ClientTools,
    Dialect,
    DialectSpec,
    ResponseStream,
    Target,
    Translated,
    TranslationError,
    Usage,
)
from extproc.dialects.body_checks import MALFORMED, not_understood
from extproc.dialects.usage import most
from extproc.sse import SSEEvent, SSEParser

ResponseFunction = Callable[[dict, Target | None, ClientTools | None], dict]


class StreamFactory(Protocol):
    def __call__(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
                 client_tools: ClientTools | None = None) -> ResponseStream: ...


@dataclass(frozen=True, slots=True)
class HubLeg:
    """A translator between a dialect and the hub, in one direction of requests: client → provider."""

    client: Dialect
    provider: Dialect
    client_path: str  # the client's API path the provider knows as `provider_path`
    provider_path: str
    request: Callable[[dict, Target], dict]  # the client's request body → the provider's
    response: ResponseFunction  # the provider's JSON response → the client's
    response_stream: StreamFactory  # the provider's SSE stream → the client's
    response_error: Callable[[int, bytes], tuple[int, bytes]]  # the provider's error → the client's
    client_usage: Callable[[object], Usage]  # the client dialect's `usage` object → Usage

    def request_path(self, client_path: str) -> str:
        return self.provider_path if client_path.rstrip("/") == self.client_path else client_path

    def request_body(self, body: dict, target: Target) -> dict:
        try:
            return self.request(body, target)
        except MALFORMED as exc:  # a wrongly shaped field: the client's 400, not the gateway's 500
            raise TranslationError(f"malformed request body: {exc}") from exc

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> Translated:
        try:
            out = self.response(body, target, client_tools)
        except MALFORMED as exc:
            raise not_understood(str(exc)) from exc
        return Translated(out, self.client_usage(out.get("usage")))

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> ResponseStream:
        return self.response_stream(target, input_tokens_estimate=input_tokens_estimate, include_usage=include_usage,
                                    client_tools=client_tools)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return self.response_error(status, body)


class ComposedStream:
    """The provider's stream through the hub: provider → hub (`inner`), hub → client (`outer`)."""

    def __init__(self, inner: ResponseStream, outer: ResponseStream) -> None:
        self.inner = inner
        self.outer = outer

    @property
    def usage(self) -> Usage:
        return self.outer.usage

    @property
    def done(self) -> bool:
        return self.outer.done

    def feed(self, chunk: bytes) -> bytes:
        return self.outer.feed(self.inner.feed(chunk))

    def close(self) -> bytes:
        return self.outer.feed(self.inner.close()) + self.outer.close()


class Composed:
    """client → hub → provider, for a pair where neither side is the hub. Both legs see the provider's
    `Target`; a 400 raised by the second leg names the field the client wrote (`hub_param`)."""

    def __init__(self, first: HubLeg, second: HubLeg, hub_param: Callable[[str], str]) -> None:
        self.first = first  # client → hub
        self.second = second  # hub → provider
        self.hub_param = hub_param
        self.client: Dialect = first.client
        self.provider: Dialect = second.provider

    def request_path(self, client_path: str) -> str:
        return self.second.request_path(self.first.request_path(client_path))

    def request_body(self, body: dict, target: Target) -> dict:
        hub = self.first.request_body(body, target)
        try:
            return self.second.request_body(hub, target)
        except TranslationError as exc:
            param = self.hub_param(exc.param) if exc.param else None
            raise TranslationError(exc.message, param, exc.status) from exc

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> Translated:
        return self.first.response_body(self.second.response_body(body, target).body, target, client_tools)

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> ComposedStream:
        # the hub stream in the middle always carries usage: the client's leg decides what it shows
        inner = self.second.stream(target, include_usage=True)
        outer = self.first.stream(target, input_tokens_estimate=input_tokens_estimate, include_usage=include_usage,
                                  client_tools=client_tools)
        return ComposedStream(inner, outer)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return self.first.error(*self.second.error(status, body))


class PassthroughStream:
    """Every chunk comes out exactly as it went in; the usage its events carry is read on the way."""

    def __init__(self, spec: DialectSpec) -> None:
        self._usage_in = spec.usage_in
        self._parser = SSEParser()
        self.usage: Usage = {}
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        self._read(self._parser.feed(chunk))
        return chunk

    def close(self) -> bytes:
        self._read(self._parser.close())
        self.done = True
        return b""

    def _read(self, events: list[SSEEvent]) -> None:
        for event in events:
            with suppress(orjson.JSONDecodeError):  # `[DONE]`, keep-alives: no usage there
                doc = orjson.loads(event.data)
                if isinstance(doc, dict):
                    most(self.usage, self._usage_in(doc))


class Passthrough:
    """Translator for client == provider: paths, bodies, streams and errors go through untouched
    (upstream Anthropic errors in particular must reach Claude Code word for word: it acts on their text)."""

    def __init__(self, spec: DialectSpec) -> None:
        self.client: Dialect = spec.name
        self.provider: Dialect = spec.name
        self.spec = spec

    def request_path(self, client_path: str) -> str:
        return client_path

    def request_body(self, body: dict, target: Target) -> dict:
        return body

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> Translated:
        return Translated(body, self.spec.usage_in(body))

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> PassthroughStream:
        return PassthroughStream(self.spec)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return status, body
