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

_CHAT, _MESSAGES, _RESPONSES = openai_chat.PATH, anthropic.PATH, openai_responses.PATH

# (to the hub: the client speaks the dialect, from the hub: the provider does), per dialect but the hub
_LEGS: dict[Dialect, tuple[HubLeg, HubLeg]] = {
    "anthropic": (
        HubLeg("anthropic", HUB, _MESSAGES, _CHAT, chat_from_anthropic.request, anthropic_from_chat.response,
               AnthropicFromChatStream, anthropic_from_chat.provider_error, anthropic.usage),
        HubLeg(HUB, "anthropic", _CHAT, _MESSAGES, anthropic_from_chat.request, chat_from_anthropic.response,
               ChatFromAnthropicStream, chat_from_anthropic.provider_error, openai_chat.usage),
    ),
    "openai-responses": (
        HubLeg("openai-responses", HUB, _RESPONSES, _CHAT, chat_from_responses.request, responses_from_chat.response,
               ResponsesFromChatStream, partial(relay_error, param_of=openai_responses.hub_param),
               openai_responses.usage),
        HubLeg(HUB, "openai-responses", _CHAT, _RESPONSES, responses_from_chat.request, chat_from_responses.response,
               ChatFromResponsesStream, relay_error, openai_chat.usage),
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
