"""Dialects and translation between them: one spec per dialect, translation through one common form.

The dialects meet in OpenAI Chat Completions (the *hub*): each dialect other than the hub brings two
translators, to the hub and from it, and every other pair is those composed (client → hub → provider,
responses and streams back the same way, chunk by chunk). N dialects need 2(N − 1) translators, not
N²; a new dialect is one module plus one line in `DIALECTS`.

    translator = translator_for("anthropic", "openai")
    path = translator.request_path("/v1/messages")
    body = translator.request_body(client_body, target)
    stream = translator.stream(target, input_tokens_estimate=count_tokens_estimate(client_body))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from extproc.dialects import anthropic, anthropic_to_openai, openai, openai_responses
from extproc.dialects.anthropic import count_tokens_estimate
from extproc.dialects.anthropic_to_openai import AnthropicToOpenAI
from extproc.dialects.base import ClientTools, Dialect, StreamTranslator, Target, TranslationError, Translator
from extproc.dialects.openai_responses import ChatToResponses, ResponsesToChat
from extproc.dialects.openai_to_anthropic import OpenAIToAnthropic
from extproc.dialects.passthrough import Passthrough

HUB: Dialect = "openai"


def _same(param: str) -> str:
    return param


@dataclass(frozen=True, slots=True)
class DialectSpec:
    """What the gateway needs to know to speak one dialect: the bodies it writes itself in it, and its
    translators to and from the hub (none for the hub itself)."""

    name: Dialect
    error_body: Callable[..., bytes]  # (status, message, param=None) → the dialect's error envelope
    stream_error: Callable[[int, str], bytes]  # a mid-stream error event
    models_body: Callable[[list[str]], bytes]  # a `/v1/models` answer
    count_body: Callable[[dict], bytes] | None  # the token-count answer, estimated locally (None: no such API)
    tool_schemas: Callable[[dict], Iterator[tuple[dict, str]]]  # where a request's tool schemas live
    to_hub: Translator | None = None  # client speaks this dialect, provider the hub
    from_hub: Translator | None = None  # client speaks the hub, provider this dialect
    hub_param: Callable[[str], str] = _same  # a hub request field → the field this dialect's client wrote
    # the client's tools the provider knows by another name or shape, to map their calls back (None: none)
    client_tools: Callable[[dict], ClientTools] | None = None


DIALECTS: dict[str, DialectSpec] = {
    "anthropic": DialectSpec("anthropic", anthropic.error_body, anthropic.stream_error_event, anthropic.models_body,
                             anthropic.count_tokens_body, anthropic.tool_schemas, AnthropicToOpenAI(),
                             OpenAIToAnthropic(), anthropic.hub_param, anthropic_to_openai.client_tools),
    "openai": DialectSpec("openai", openai.error_body, openai.stream_error_chunk, openai.models_body, None,
                          openai.tool_schemas),
    openai_responses.DIALECT: DialectSpec(
        openai_responses.DIALECT, openai_responses.error_body, openai_responses.stream_error_event,
        openai.models_body, openai_responses.input_tokens_body, openai_responses.tool_schemas, ResponsesToChat(),
        ChatToResponses(), openai_responses.hub_param, openai_responses.client_tools),
}


class ComposedStream:
    """The provider's stream through the hub: provider → hub (`inner`), hub → client (`outer`)."""

    def __init__(self, inner: StreamTranslator, outer: StreamTranslator) -> None:
        self.inner = inner
        self.outer = outer

    @property
    def usage(self) -> dict | None:
        return getattr(self.outer, "usage", None)

    def feed(self, chunk: bytes) -> bytes:
        return self.outer.feed(self.inner.feed(chunk))

    def close(self) -> bytes:
        return self.outer.feed(self.inner.close()) + self.outer.close()


class Composed:
    """client → hub → provider, for a pair where neither side is the hub. Both legs see the provider's
    `Target`; a 400 raised by the second leg names the field the client wrote (`hub_param`)."""

    def __init__(self, first: Translator, second: Translator, hub_param: Callable[[str], str]) -> None:
        self.first = first  # client → hub
        self.second = second  # hub → provider
        self.hub_param = hub_param
        self.client = first.client
        self.provider = second.provider

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
                      client_tools: ClientTools | None = None) -> dict:
        return self.first.response_body(self.second.response_body(body, target), target, client_tools)

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> ComposedStream:
        # the hub stream in the middle always carries usage: the client's leg decides what it shows
        inner = self.second.stream(target, include_usage=True)
        outer = self.first.stream(target, input_tokens_estimate=input_tokens_estimate, include_usage=include_usage,
                                  client_tools=client_tools)
        return ComposedStream(inner, outer)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return self.first.error(*self.second.error(status, body))


def _translator(client: str, provider: str) -> Translator:
    if client == provider:
        return Passthrough(client)  # type: ignore[arg-type]
    if client == HUB:
        return DIALECTS[provider].from_hub  # type: ignore[return-value]
    if provider == HUB:
        return DIALECTS[client].to_hub  # type: ignore[return-value]
    spec = DIALECTS[client]
    return Composed(spec.to_hub, DIALECTS[provider].from_hub, spec.hub_param)  # type: ignore[arg-type]


TRANSLATORS: dict[tuple[str, str], Translator] = {(c, p): _translator(c, p) for c in DIALECTS for p in DIALECTS}


def translator_for(client: Dialect, provider: Dialect) -> Translator:
    """The translator for this pair; KeyError for a dialect nobody registered."""
    return TRANSLATORS[(client, provider)]


__all__ = [
    "DIALECTS",
    "Dialect",
    "DialectSpec",
    "StreamTranslator",
    "Target",
    "TranslationError",
    "Translator",
    "count_tokens_estimate",
    "translator_for",
]
