"""Dialect translation: pick a `Translator` for a (client dialect, provider dialect) pair.

    translator = translator_for("anthropic", "openai")
    path = translator.request_path("/v1/messages")
    body = translator.request_body(client_body, target)
    stream = translator.stream(target, input_tokens_estimate=count_tokens_estimate(client_body))
"""

from __future__ import annotations

from extproc.dialects.anthropic import count_tokens_estimate
from extproc.dialects.anthropic_to_openai import AnthropicToOpenAI
from extproc.dialects.base import Dialect, StreamTranslator, Target, TranslationError, Translator
from extproc.dialects.openai_to_anthropic import OpenAIToAnthropic
from extproc.dialects.passthrough import Passthrough

TRANSLATORS: dict[tuple[str, str], Translator] = {
    ("anthropic", "anthropic"): Passthrough("anthropic"),
    ("openai", "openai"): Passthrough("openai"),
    ("anthropic", "openai"): AnthropicToOpenAI(),
    ("openai", "anthropic"): OpenAIToAnthropic(),
}


def translator_for(client: Dialect, provider: Dialect) -> Translator:
    """The translator for this pair; KeyError for a dialect nobody registered."""
    return TRANSLATORS[(client, provider)]


__all__ = [
    "Dialect",
    "StreamTranslator",
    "Target",
    "TranslationError",
    "Translator",
    "count_tokens_estimate",
    "translator_for",
]
