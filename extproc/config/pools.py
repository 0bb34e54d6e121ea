"""Credential pools (extproc.pools): a provider's keys — where Envoy reads each, its name and weight,
never the key itself — and how long a refused key cools."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .base import _Model

_POOL_KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class PoolKey(_Model):
    """One key of a provider's credential pool: where Envoy reads it, and its share of the pool's
    conversations. The name labels metrics and records; the key itself is never read here."""

    name: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    weight: int = Field(default=1, ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _POOL_KEY_NAME.match(v):
            raise ValueError(f"{v!r} is not a key name; use 1-32 lower-case letters, digits, '-' or '_', "
                             "e.g. team-a (it labels metrics, never the key itself)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> PoolKey:
        if bool(self.api_key_env) == bool(self.api_key_file):
            raise ValueError(f"key {self.name!r} needs exactly one of api_key_env or api_key_file, "
                             "e.g. {name: team-a, api_key_env: ANTHROPIC_KEY_A}")
        return self


class Pools(_Model):
    """A key that answers 429/529 without saying when to come back cools for `backoff_s`, doubling on
    each repeat up to `max_cooldown_s`. `state_dir`: where the pool file Envoy watches and Envoy's log
    of attempts live (`lunaroute up` sets its runtime dir)."""

    backoff_s: float = Field(default=30.0, gt=0, le=3600)
    max_cooldown_s: float = Field(default=3600.0, gt=0, le=86_400)
    state_dir: str | None = None
