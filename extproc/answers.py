"""Answers the gateway writes itself, always in the client's own dialect."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from .actions import Reply
from .config import Config
from .dialects import DIALECTS, anthropic, openai_chat
from .dialects.base import Dialect


def error_reply(client: Dialect, status: int, message: str, param: str | None = None) -> Reply:
    body = DIALECTS[client].error_body(status, message, param)
    return Reply.reply_now(status, body, details=f"lunaroute_{status}")


def error_bodies(status: int, message: str) -> dict[str, bytes]:
    """One error in every shape a path can ask for: each dialect's own, and "both" (Anthropic's envelope
    carrying OpenAI's `code` and `param` too, which both SDKs read) for paths of either vendor. Envoy's
    gate and local replies are rendered from these, so every error has one shape whoever answers."""
    both = anthropic.error_obj(status, message)
    both["error"].update(param=None, code=openai_chat.error_obj(status, message)["error"]["code"])
    return {"anthropic": anthropic.error_body(status, message), "openai": openai_chat.error_body(status, message),
            "both": orjson.dumps(both)}


def advertised_models(cfg: Config) -> list[str]:
    """Configured models of every provider, each provider's `model` override first; no duplicates."""
    seen: dict[str, None] = {}
    for p in cfg.providers.values():
        for m in ([p.model] if p.model else []) + p.models:
            seen.setdefault(m, None)
    return list(seen)


def models_body_for(client: Dialect) -> Callable[[list[str]], bytes]:
    return DIALECTS[client].models_body


def models_reply(client: Dialect, ids: list[str], path: str) -> Reply:
    """`GET /v1/models` (a list) or `GET /v1/models/{id}` (one model) in the client's dialect."""
    prefix = "/v1/models/"
    if path.startswith(prefix):
        wanted = path[len(prefix):]
        if wanted not in ids:
            return error_reply(client, 404, f"model {wanted!r} is not served by this gateway", "model")
        one = orjson.loads(DIALECTS[client].models_body([wanted]))["data"][0]
        return Reply.reply_now(200, orjson.dumps(one))
    return Reply.reply_now(200, DIALECTS[client].models_body(ids))


def count_tokens_reply(client: Dialect, body: dict) -> Reply:
    """`/v1/messages/count_tokens`, `/v1/responses/input_tokens` for providers that cannot count (they
    speak another dialect): an estimate, never 0."""
    count_body = DIALECTS[client].count_body
    assert count_body is not None, f"{client} has no token-count endpoint"
    return Reply.reply_now(200, count_body(body))
