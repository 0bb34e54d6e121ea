"""Dialects and translation between them: one package per dialect, translation through one common form.

The dialects meet in OpenAI Chat Completions (the *hub*, `openai_chat`): each other dialect brings two
legs, to the hub and from it, and every other pair is those composed (client → hub → provider,
responses and streams back the same way, chunk by chunk). N dialects need 2(N − 1) legs, not N².

Every dialect package has one shape: `spec` (its `DialectSpec`: the bodies the gateway writes in it,
where its requests keep tool schemas, where its responses report usage) and translators named by what
they produce, `from_<in>` (request, response and errors) and `from_<in>_stream`. A new dialect is a
package, one line in `DIALECTS` and its two legs in `_LEGS`.

    translator = translator_for("anthropic", "openai")
    path = translator.request_path("/v1/messages")
    body = translator.request_body(client_body, target)
    stream = translator.stream(target, input_tokens_estimate=count_tokens_estimate(client_body))
    client_bytes = stream.feed(provider_bytes) + stream.close(); stream.usage  # {"input": …, "output": …}
"""

from __future__ import annotations

from functools import partial

from extproc.dialects import anthropic, openai_chat, openai_responses
from extproc.dialects.anthropic import from_chat as anthropic_from_chat
from extproc.dialects.anthropic.from_chat_stream import AnthropicFromChatStream
from extproc.dialects.anthropic.spec import count_tokens_estimate
from extproc.dialects.base import (
    ClientTools,
    Dialect,
    DialectSpec,
    ResponseStream,
    Target,
    Translated,
    TranslationError,
    Translator,
    Usage,
)
from extproc.dialects.openai_chat import from_anthropic as chat_from_anthropic
from extproc.dialects.openai_chat import from_responses as chat_from_responses
from extproc.dialects.openai_chat.from_anthropic_stream import ChatFromAnthropicStream
from extproc.dialects.openai_chat.from_responses_stream import ChatFromResponsesStream
from extproc.dialects.openai_chat.spec import relay_error
from extproc.dialects.openai_responses import from_chat as responses_from_chat
from extproc.dialects.openai_responses.from_chat_stream import ResponsesFromChatStream
from extproc.dialects.stream import StreamTranslator
from extproc.dialects.translators import Composed, HubLeg, Passthrough

HUB: Dialect = "openai"

DIALECTS: dict[Dialect, DialectSpec] = {
    "anthropic": anthropic.SPEC,
    "openai": openai_chat.SPEC,
    "openai-responses": openai_responses.SPEC,
}

# Per dialect but the hub: (to the hub — the client speaks the dialect, from the hub — the provider does).
# Each function is named by what it produces: requests go client → provider, the rest provider → client.
_LEGS: dict[Dialect, tuple[HubLeg, HubLeg]] = {
    "anthropic": (
        HubLeg(client="anthropic", provider=HUB, client_path=anthropic.PATH, provider_path=openai_chat.PATH,
               request=chat_from_anthropic.request, response=anthropic_from_chat.response,
               response_stream=AnthropicFromChatStream, response_error=anthropic_from_chat.provider_error,
               client_usage=anthropic.usage),
        HubLeg(client=HUB, provider="anthropic", client_path=openai_chat.PATH, provider_path=anthropic.PATH,
               request=anthropic_from_chat.request, response=chat_from_anthropic.response,
               response_stream=ChatFromAnthropicStream, response_error=chat_from_anthropic.provider_error,
               client_usage=openai_chat.usage),
    ),
    "openai-responses": (
        HubLeg(client="openai-responses", provider=HUB, client_path=openai_responses.PATH,
               provider_path=openai_chat.PATH, request=chat_from_responses.request,
               response=responses_from_chat.response, response_stream=ResponsesFromChatStream,
               response_error=partial(relay_error, param_of=openai_responses.hub_param),
               client_usage=openai_responses.usage),
        HubLeg(client=HUB, provider="openai-responses", client_path=openai_chat.PATH,
               provider_path=openai_responses.PATH, request=responses_from_chat.request,
               response=chat_from_responses.response, response_stream=ChatFromResponsesStream,
               response_error=relay_error, client_usage=openai_chat.usage),
    ),
}


def _translator(client: Dialect, provider: Dialect) -> Translator:
    if client == provider:
        return Passthrough(DIALECTS[client])
    if client == HUB:
        return _LEGS[provider][1]
    if provider == HUB:
        return _LEGS[client][0]
    return Composed(_LEGS[client][0], _LEGS[provider][1], DIALECTS[client].hub_param)


TRANSLATORS: dict[tuple[Dialect, Dialect], Translator] = {(c, p): _translator(c, p) for c in DIALECTS for p in DIALECTS}


def translator_for(client: Dialect, provider: Dialect) -> Translator:
    """The translator for this pair; KeyError for a dialect nobody registered."""
    return TRANSLATORS[(client, provider)]


__all__ = [
    "DIALECTS",
    "HUB",
    "ClientTools",
    "Dialect",
    "DialectSpec",
    "ResponseStream",
    "StreamTranslator",
    "Target",
    "Translated",
    "TranslationError",
    "Translator",
    "Usage",
    "anthropic",
    "count_tokens_estimate",
    "openai_chat",
    "openai_responses",
    "translator_for",
]
