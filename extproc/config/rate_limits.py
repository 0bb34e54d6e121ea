"""The `rate_limits:` section: requests and tokens per minute, per gateway key or per provider.

    rate_limits:
      - {key: alice, rpm: 60, tpm: 400000}   # one key
      - {key: "*", rpm: 120}                 # every key, each on its own
      - {provider: gpt, model: "gpt-5*", tpm: 2000000}

Every limit a request matches applies. Requests per minute are counted by Envoy before anything else
(`envoy_config.rate_limits`); tokens per minute are charged after the response, shared through the
budgets' store (`extproc.rate_windows`). Its own module: `config` is long enough.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None  # a gateway key's name, or "*" (each key on its own)
    provider: str | None = None
    model: str | None = None  # a glob, with `provider`
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    concurrent: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_scope_some_amount(self) -> RateLimit:
        if (self.key is None) == (self.provider is None):
            raise ValueError("give exactly one of key (a gateway key's name, or \"*\" for each key) or provider, "
                             "e.g. {key: alice, rpm: 60} or {provider: gpt, tpm: 2000000}")
        if self.model is not None and self.provider is None:
            raise ValueError(f"model {self.model!r} needs a provider: {{provider: <name>, model: {self.model!r}, "
                             "tpm: ...}")
        if self.rpm is None and self.tpm is None and self.concurrent is None:
            raise ValueError("give rpm (requests per minute) or tpm (tokens per minute)")
        if self.concurrent is not None:
            raise ValueError(f"concurrent: {self.concurrent}: concurrency per key or provider is not enforced "
                             "(Envoy counts no concurrent requests per descriptor); use rpm, or "
                             "limits.max_concurrent_requests for the whole gateway")
        if self.rpm is not None and self.model is not None:
            raise ValueError(f"rpm with model {self.model!r}: requests per minute are counted per key or provider "
                             "(before the body is read); use tpm for a model, or drop model")
        return self

    @property
    def where(self) -> str:
        return f"key={self.key}" if self.key is not None else f"provider={self.provider}" + (
            f",model={self.model}" if self.model else "")
