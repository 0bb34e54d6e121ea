"""Answers the gateway writes itself, always in the client's own dialect."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from .actions import Reply
from .config import Config
from .dialects import DIALECTS
from .dialects.base import Dialect


def error_reply(client: Dialect, status: int, message: str, param: str | None = None) -> Reply:
    body = DIALECTS[client].error_body(status, message, param)
    return Reply.reply_now(status, body, details=f"lunaroute_{status}")


def advertised_models(cfg: Config) -> list[str]:
    """Configured models of every provider, each provider's `model` override first; no duplicates."""
    seen: dict[str, None] = {}
    for p in cfg.providers.values():
        for m in ([p.model] if p.model else []) + p.models:
            seen.setdefault(m, None)
    return list(seen)


def models_body_for(client: Dialect) -> Callable[[list[str]], bytes]:
    return DIALECTS[client].models_body


def models_reply(client: Dialect, cfg: Config, path: str) -> Reply:
    """`GET /v1/models` (a list) or `GET /v1/models/{id}` (one model) in the client's dialect."""
    ids = advertised_models(cfg)
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
