"""Providers and routing: each provider's dialect, address, credentials (where Envoy reads them, never
the key itself) and quirks; the model rules; the bypass provider."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..dialects.base import Dialect
from .base import _Model
from .pools import PoolKey


class Pricing(_Model):
    """USD per million tokens; used by `sort: price` in provider preferences."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


# Keywords that carry a schema's structure: dropping them would leave tools without their arguments.
_SCHEMA_STRUCTURE = frozenset({"type", "properties", "items"})
# Headers the gateway itself decides about (credentials follow `auth`); never in `forward_headers`.
_GATEWAY_HEADERS = frozenset({"authorization", "x-api-key", "host", "content-length"})
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


class ToolSchema(_Model):
    """Tool schemas cleaned for a strict provider: `drop_keys` are removed wherever they are a schema
    keyword (never where they name a property), e.g. Gemini rejects `$schema` and `propertyNames`."""

    drop_keys: list[str] = []

    @field_validator("drop_keys")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        for key in v:
            if key in _SCHEMA_STRUCTURE:
                raise ValueError(f"{key!r} carries the schema's structure and cannot be dropped; list only the "
                                 "keywords the provider rejects, e.g. [\"$schema\", \"propertyNames\"]")
            if not key.strip():
                raise ValueError("an empty keyword; list JSON Schema keywords such as $schema")
        return v


class Provider(_Model):
    type: Dialect
    base_url: str
    # passthrough: the client's own credentials, converted to this provider's header if the client
    # speaks the other dialect; none: no credentials; unset: the client's own, only when it speaks
    # this provider's dialect (a key meant for one vendor never goes to another by accident).
    auth: Literal["passthrough", "none"] | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    # A pool of keys (extproc.pools): each conversation sticks to one, 429s move on to the next.
    keys: list[PoolKey] = []
    model: str | None = None
    models: list[str] = []
    endpoint_prefixes: list[str] = []
    # OpenAI-type only: which field carries the output cap, and a cap the provider enforces.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    max_tokens: int | None = Field(default=None, ge=1)
    # Per-model caps, first matching glob wins (e.g. {"deepseek-reasoner": 32768, "*": 8192}).
    max_tokens_by_model: dict[str, int] = {}
    pricing: Pricing | None = None
    # Anthropic clients: how this provider's `reasoning_content` comes back (see README).
    reasoning: Literal["thinking", "text", "drop"] = "thinking"
    # Send `reasoning_effort` derived from Anthropic `thinking`; turn off for models that reject it.
    reasoning_effort: bool = True
    tool_schema: ToolSchema = ToolSchema()
    # When set, only these client headers (lower case) reach this provider, besides what the gateway
    # itself needs (content-type, accept…, credentials per `auth`). Unset: every client header.
    forward_headers: list[str] | None = None
    # Prompt caching of translated requests (README: Prompt caching). Anthropic-type: automatic
    # cache_control breakpoints, or off. OpenAI-type: a prompt_cache_key per conversation, or none
    # (some OpenAI-compatible servers reject the field).
    prompt_caching: Literal["auto", "off"] = "auto"
    prompt_cache_key: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL; write it like https://api.example.com/v1")
        if parts.query or parts.fragment:
            raise ValueError(f"{v!r} has a query or fragment; give only scheme, host, port and path prefix")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{v!r} has an invalid port; use a number 1-65535") from None
        return v.rstrip("/")

    @field_validator("forward_headers")
    @classmethod
    def _headers(cls, v: list[str] | None) -> list[str] | None:
        for name in v or ():
            if name in _GATEWAY_HEADERS:
                raise ValueError(f"{name!r} is decided by the gateway (credentials follow `auth`, the rest is "
                                 "always sent); remove it from forward_headers")
            if name.startswith(":") or name.startswith("x-lunaroute-"):
                raise ValueError(f"{name!r} is not a client header the gateway forwards; remove it")
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a lower-case header name; write it like x-request-id")
        return v

    @field_validator("endpoint_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r} must start with '/', e.g. /v1/chat/completions")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> Provider:
        chosen = [k for k in ("auth", "api_key_env", "api_key_file", "keys") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(
                f"sets {' and '.join(chosen)}; choose one: auth: passthrough, api_key_env, api_key_file, "
                "or keys (a pool: [{name, api_key_env | api_key_file, weight}])"
            )
        names = [k.name for k in self.keys]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"keys: the name {twice[0]!r} is used twice; give every key of the pool its own name")
        return self

    @model_validator(mode="after")
    def _caching_for_type(self) -> Provider:
        # Only a change from the default says something (the workers get the config back as JSON, defaults and all).
        if self.type == "anthropic" and not self.prompt_cache_key:
            raise ValueError("prompt_cache_key is for openai and openai-responses providers; Anthropic caches "
                             "at cache_control breakpoints: use prompt_caching: auto | off")
        if self.type != "anthropic" and self.prompt_caching != "auto":
            raise ValueError("prompt_caching is for anthropic providers; OpenAI-type providers cache by "
                             "themselves: use prompt_cache_key: true | false")
        return self

    @property
    def keyed(self) -> bool:
        """Envoy injects this provider's own key."""
        return bool(self.api_key_env or self.api_key_file or self.keys)

    @property
    def pool(self) -> list[PoolKey]:
        """The provider's keys: its `keys`, or its one `api_key_env` / `api_key_file` as a pool of one
        named `default` (empty without a key of its own)."""
        if self.keys:
            return list(self.keys)
        if self.api_key_env or self.api_key_file:
            return [PoolKey(name="default", api_key_env=self.api_key_env, api_key_file=self.api_key_file)]
        return []

    @property
    def pooled(self) -> bool:
        """More than one key: Envoy walks the pool (extproc.envoy_config.pools)."""
        return len(self.keys) > 1

    @property
    def uses_client_key(self) -> bool:
        """The client's own credentials may reach this provider."""
        return not self.keyed and self.auth != "none"

    @cached_property
    def _parts(self):  # noqa: ANN202 - private helper
        return urlsplit(self.base_url)

    @property
    def tls(self) -> bool:
        return self._parts.scheme == "https"

    @property
    def host(self) -> str:
        return self._parts.hostname or ""

    @property
    def port(self) -> int:
        return self._parts.port or (443 if self.tls else 80)

    @property
    def path_prefix(self) -> str:
        """The base path in front of `/v1/...`: a trailing `/v1` is the API version, never doubled."""
        path = self._parts.path.rstrip("/")
        return path[: -len("/v1")] if path.endswith("/v1") else path

    @property
    def versioned_base(self) -> bool:
        """An OpenAI-style base URL whose path is the whole API root (Gemini's `/v1beta/openai`), as the
        OpenAI SDKs read base URLs: kept as given, with the client path's `/v1` replaced by it. Anthropic
        base URLs never carry the version (its SDKs append `/v1/...`), so theirs stay a prefix."""
        path = self._parts.path.rstrip("/")
        return self.type != "anthropic" and bool(path) and not path.endswith("/v1")

    def upstream_path(self, client_path: str) -> str:
        if self.versioned_base and client_path.startswith("/v1/"):
            return self.path_prefix + client_path[len("/v1"):]
        return self.path_prefix + client_path

    def auth_header(self) -> tuple[str, str]:
        """The header this provider's key goes in, and the prefix in front of the key."""
        return ("x-api-key", "") if self.type == "anthropic" else ("authorization", "Bearer ")


class Rule(_Model):
    """`model` is a glob (`claude-*`); `model_regex` a full-match regular expression. Give one."""

    model: str | None = None
    model_regex: str | None = None
    provider: str
    fallbacks: list[str] = []
    priority: int = 0

    @model_validator(mode="after")
    def _one_matcher(self) -> Rule:
        if (self.model is None) == (self.model_regex is None):
            raise ValueError("give exactly one of model (a glob like claude-*) or model_regex")
        if self.model_regex is not None:
            try:
                re.compile(self.model_regex)
            except re.error as exc:
                raise ValueError(f"model_regex {self.model_regex!r} is not a valid regex ({exc})") from None
        return self


class Routing(_Model):
    rules: list[Rule] = []


class Bypass(_Model):
    enabled: bool = True
    provider: str | None = None
