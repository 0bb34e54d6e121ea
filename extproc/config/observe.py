"""What the gateway measures and keeps: budgets, session recording, PII, prices, tracing."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .base import ConfigError, _Model


class BudgetLimit(_Model):
    """One spending limit (extproc/observe/budgets.py): `usd` or `tokens` per `period` (UTC day or
    month), for the requests that match every scope given — `key` (a gateway key's name), `provider`,
    `session` — each a glob; `"*"` counts each key, provider or session on its own."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    key: str | None = None
    provider: str | None = None
    session: str | None = None
    usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, ge=1)
    period: Literal["day", "month"] = "day"

    @model_validator(mode="after")
    def _one_amount_some_scope(self) -> BudgetLimit:
        if (self.usd is None) == (self.tokens is None):
            raise ValueError(f"budget {self.name!r}: give exactly one of usd or tokens")
        if self.key is None and self.provider is None and self.session is None:
            raise ValueError(f"budget {self.name!r}: give at least one of key, provider, session ('*': each one)")
        return self


class BudgetsConfig(_Model):
    """Spending limits, shared by every worker (SQLite file) or every replica (`redis://` URL).
    `daily_tokens` is shorthand for a per-provider token limit per UTC day. Store calls wait at most
    `timeout_ms` (off the event loop), then fail open."""

    store: str = "~/.lunaroute/budgets.sqlite"
    daily_tokens: dict[str, int] = {}
    limits: list[BudgetLimit] = []
    timeout_ms: int = Field(default=250, ge=1, le=10_000)

    @field_validator("daily_tokens")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        for name, tokens in v.items():
            if tokens < 1:
                raise ValueError(f"{name}: {tokens} is not a positive number of tokens per day")
        return v

    def all_limits(self) -> list[BudgetLimit]:
        return [BudgetLimit(name=f"daily_tokens.{p}", provider=p, tokens=n) for p, n in self.daily_tokens.items()
                ] + self.limits


class Recording(_Model):
    """Session records with bodies, in a SQLite store under `dir` (extproc/observe/sessions.py); off by
    default. Written by a thread off the request path through a queue of `queue_size` records (a full
    queue drops and counts); records older than `max_age_days`, the oldest beyond `max_bytes` of
    compressed bodies and the oldest sessions beyond `max_sessions` are deleted (a client inventing a
    session id per request cannot grow the store without bound); a body beyond `max_body_bytes` is cut
    there (and says so)."""

    enabled: bool = False
    dir: str = "~/.lunaroute/sessions"
    max_age_days: float = Field(default=30, gt=0)
    max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    queue_size: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=8 << 20, ge=1024)
    max_sessions: int = Field(default=10_000, ge=1)


class Pii(_Model):
    """PII redaction (extproc/observe/pii.py): always for session records, and for the request sent to
    the provider when `redact_requests`. `tokenize` keys its HMAC with the secret in the environment
    variable `token_secret_env` (the same secret everywhere gives the same tokens everywhere)."""

    detect: list[Literal["email", "phone", "ssn", "credit_card", "ip", "secret"]] = [
        "email", "phone", "ssn", "credit_card", "ip", "secret"]
    mode: Literal["mask", "remove", "tokenize", "partial"] = "mask"
    redact_requests: bool = False
    token_secret_env: str | None = None

    def secret(self, env: dict[str, str]) -> bytes:
        """The tokenize mode's key, read from the environment by the process that redacts."""
        if self.mode != "tokenize":
            return b""
        value = env.get(self.token_secret_env or "", "")
        if len(value) < 16:
            raise ConfigError(f"pii.token_secret_env: mode tokenize needs a secret of at least 16 characters in "
                              f"${self.token_secret_env or '<unset>'}; set pii.token_secret_env and that variable")
        return value.encode()


class ModelPrice(_Model):
    """USD per million tokens for the models a `pricing` glob matches (extproc/observe/pricing.py)."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cache_read_per_mtok: float = Field(default=0.0, ge=0)
    cache_write_per_mtok: float = Field(default=0.0, ge=0)




class Tracing(_Model):
    """Envoy's OpenTelemetry tracer: spans sent over OTLP/HTTP to `otlp_endpoint` (off when empty)."""

    otlp_endpoint: str = ""  # http(s)://collector:4318
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = Field(default="lunaroute", min_length=1, max_length=128)

    @field_validator("otlp_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                raise ValueError(f"{value!r} is not an OTLP/HTTP collector address; write http(s)://host:port, "
                                 "e.g. http://otel-collector:4318 (spans go to its /v1/traces)")
        return value
