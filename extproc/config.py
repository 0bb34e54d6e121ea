"""The gateway's configuration: one YAML file, a typed schema, env overrides, errors that teach.

Every mistake stops startup with one line that names the key, the bad value and the fix
(`ConfigError`). Secrets are never read into this model: a provider names *where* its key lives
(`api_key_env` / `api_key_file`) and Envoy reads it from there itself.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .dialects.base import Dialect
from .rate_limit_config import RateLimit

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONFIG_ENV = "LUNAROUTE_CONFIG"


class ConfigError(Exception):
    """A configuration mistake, phrased as one line for the person who made it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)


class Admin(_Model):
    """Envoy's admin interface; loopback only unless you really mean it. `socket`: a Unix socket
    (mode 0600) instead, so nothing sharing the network namespace (an app container beside a sidecar)
    can reach it."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: any free port (written to the runtime dir)
    socket: str | None = None


class ExtProcTLS(_Model):
    """Mutual TLS for workers that Envoy reaches over a network (the Helm chart's mesh mode): only a
    client holding a certificate signed by `client_ca_file` completes the handshake, so no other pod
    can open a stream (README: Security). PEM files, read when a worker starts."""

    cert_file: str
    key_file: str
    client_ca_file: str


class ExtProc(_Model):
    """Where the Python workers listen. Worker *i* listens on `port + i`; Envoy balances across them."""

    host: str = "127.0.0.1"  # where Envoy connects to the workers
    bind_host: str | None = None  # where the workers listen, when that differs (containers: 0.0.0.0)
    port: int = Field(50051, ge=1, le=65535)
    workers: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)), ge=1, le=64)  # 1 per core
    message_timeout_ms: int = Field(10_000, ge=100)
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=4 * 1024 * 1024)


    # Workers listen on Unix sockets `<socket_dir>/worker-<i>.sock` instead of TCP: cheaper per message
    # and out of reach of anything but this user. `lunaroute up` uses its private runtime directory.
    socket_dir: str | None = None
    # TCP with mutual TLS (as well as `socket_dir`'s sockets, which then serve local health probes only).
    tls: ExtProcTLS | None = None

    @property
    def listen_host(self) -> str:
        return self.bind_host or self.host

    def worker_address(self, index: int) -> str:
        """Where worker `index` listens, as gRPC writes it."""
        if self.socket_dir:
            return f"unix:{self.socket_path(index)}"
        return f"{self.listen_host}:{self.port + index}"

    def socket_path(self, index: int) -> str:
        return f"{self.socket_dir}/worker-{index}.sock"


class Limits(_Model):
    """Bounds that keep hostile or careless clients from exhausting the gateway."""

    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024)
    # Envoy's heap: past 85 % the streams holding most memory are reset, past 95 % new requests get 503.
    envoy_max_heap_bytes: int = Field(1024 * 1024 * 1024, ge=64 * 1024 * 1024)
    max_connections: int = Field(4096, ge=16)  # open client connections, in total
    max_streams_per_connection: int = Field(128, ge=1)  # concurrent HTTP/2 streams of one client connection
    # Requests in the workers' hands at once (each holds its buffered body): beyond it Envoy refuses at
    # once, before reading the body. Buffered memory stays below about this × max_request_bytes.
    max_concurrent_requests: int = Field(1024, ge=1)
    # Larger bodies always go through Python (bounded by max_concurrent_requests), never the fast path.
    fast_path_max_bytes: int = Field(8 * 1024 * 1024, ge=0)


class Timeouts(_Model):
    connect_s: float = Field(10.0, gt=0)
    # A stream that sends nothing for this long is cut; long thinking pauses need minutes.
    stream_idle_s: float = Field(600.0, gt=0)
    # On SIGTERM, how long in-flight requests (streams) may take to finish before everything stops.
    drain_s: float = Field(30.0, ge=0)
    # A client must have sent its whole request (headers and body) within this: a body that trickles
    # or stalls would otherwise hold an ext_proc slot (`limits.max_concurrent_requests`) for good.
    # 120 s carries a 32 MiB body (`limits.max_request_bytes`) at 2.3 Mbit/s, a 5 MB Claude Code
    # request at 0.35 Mbit/s; the response (a stream of minutes) is not part of it. 408 when it passes.
    request_s: float = Field(120.0, gt=0)
    # A client connection with no request in flight is closed after this (it holds a place under
    # `limits.max_connections` otherwise).
    idle_connection_s: float = Field(300.0, gt=0)


class Retries(_Model):
    num_retries: int = Field(2, ge=0, le=10)
    retry_on_status: list[int] = [429, 503, 529]
    base_interval_ms: int = Field(250, ge=1)
    max_interval_ms: int = Field(5_000, ge=1)

    @field_validator("retry_on_status")
    @classmethod
    def _errors_only(cls, v: list[int]) -> list[int]:
        for code in v:
            if not 400 <= code <= 599:
                raise ValueError(f"{code} is not an error status; list 4xx/5xx codes such as 429, 503, 529")
        return v


class Pricing(_Model):
    """USD per million tokens; used by `sort: price` in provider preferences."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


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


_POOL_KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class PoolKey(_Model):
    """One key of a provider's credential pool (see `extproc.pools`): where Envoy reads it, and its
    share of the pool's conversations. The name labels metrics and records; the key itself is never
    read here."""

    name: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    weight: int = Field(1, ge=1, le=100)

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
    """Credential pools (extproc.pools). A key that answers 429/529 without saying when to come back
    cools for `backoff_s`, doubling on each repeat up to `max_cooldown_s`. `state_dir`: where the pool
    file Envoy watches and Envoy's log of refused attempts live (`lunaroute up` sets its runtime dir)."""

    backoff_s: float = Field(30.0, gt=0, le=3600)
    max_cooldown_s: float = Field(3600.0, gt=0, le=86_400)
    state_dir: str | None = None


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
    max_tokens: int | None = Field(None, ge=1)
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


class BudgetLimit(_Model):
    """One spending limit (extproc/observe/budgets.py): `usd` or `tokens` per `period` (UTC day or
    month), for the requests that match every scope given — `key` (a gateway key's name), `provider`,
    `session` — each a glob; `"*"` counts each key, provider or session on its own."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    key: str | None = None
    provider: str | None = None
    session: str | None = None
    usd: float | None = Field(None, gt=0)
    tokens: int | None = Field(None, ge=1)
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
    timeout_ms: int = Field(250, ge=1, le=10_000)

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
    max_age_days: float = Field(30, gt=0)
    max_bytes: int = Field(1 << 30, ge=1 << 20)
    queue_size: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 << 20, ge=1024)
    max_sessions: int = Field(10_000, ge=1)


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

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cache_read_per_mtok: float = Field(0.0, ge=0)
    cache_write_per_mtok: float = Field(0.0, ge=0)


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_KEY_CHARS = 24
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class GatewayKey(_Model):
    """One gateway key: who is calling (`name`) and what they may use. The key itself is never in the
    config file: give its SHA-256 (`key_sha256`), or where it lives (`key_env` / `key_file`)."""

    SECTION: ClassVar[str] = "access.keys"  # where errors say the key is
    name: str
    key_sha256: str | None = None
    key_env: str | None = None
    key_file: str | None = None
    providers: list[str] = []  # allow-list; empty: every provider
    models: list[str] = []  # allow-list of globs (claude-*); empty: every model

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _KEY_NAME.match(v):
            raise ValueError(f"{v!r} is not a usable key name; use letters, digits, '.', '_', '-', '@' "
                             "(it appears in logs and metrics)")
        return v

    @field_validator("key_sha256")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256_HEX.match(v.lower()):
            raise ValueError(f"{v!r} is not a SHA-256 hex digest; compute it with "
                             "`printf %s \"$KEY\" | sha256sum` or generate a key with `lunaroute keys new`")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_source(self) -> GatewayKey:
        chosen = [k for k in ("key_sha256", "key_env", "key_file") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError(f"key {self.name!r} {'sets ' + ' and '.join(chosen) if chosen else 'has no key'}; "
                             "give exactly one of key_sha256, key_env or key_file")
        return self

    def digest(self, env: dict[str, str] | None = None) -> str:
        """The key's SHA-256 hex digest, reading `key_env` / `key_file` now (key rotation re-reads).
        Raises ConfigError naming the key when the key is not where the config says."""
        if self.key_sha256:
            return self.key_sha256
        where = f"{self.SECTION}[{self.name}]"
        if self.key_env:
            value = (os.environ if env is None else env).get(self.key_env, "")
            if not value:
                raise ConfigError(f"{where}.key_env: environment variable {self.key_env} is not set; export "
                                  "it (generate a key with `lunaroute keys new`), or use key_sha256")
        else:
            path = Path(self.key_file or "").expanduser()
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where}.key_file: cannot read {self.key_file!r} ({exc.strerror}); create "
                                  "it with the key as its only content") from None
        value = value.strip()
        if len(value) < MIN_KEY_CHARS:
            raise ConfigError(f"{where}: the key has {len(value)} characters, fewer than {MIN_KEY_CHARS}; "
                              "use a long random key (`lunaroute keys new`)")
        return hashlib.sha256(value.encode()).hexdigest()


class Tracing(_Model):
    """Envoy's OpenTelemetry tracer: spans sent over OTLP/HTTP to `otlp_endpoint` (off when empty)."""

    otlp_endpoint: str = ""  # http(s)://collector:4318
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    service_name: str = Field("lunaroute", min_length=1, max_length=128)

    @field_validator("otlp_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                raise ValueError(f"{value!r} is not an OTLP/HTTP collector address; write http(s)://host:port, "
                                 "e.g. http://otel-collector:4318 (spans go to its /v1/traces)")
        return value


class AdminKey(GatewayKey):
    """A key to the web console (extproc/console): the same shapes as a gateway key, without
    allow-lists (an admin sees everything). `lunaroute keys new --admin` prints one."""

    SECTION: ClassVar[str] = "console.admin_keys"

    @model_validator(mode="after")
    def _no_allow_lists(self) -> AdminKey:
        if self.providers or self.models:
            raise ValueError(f"console.admin_keys[{self.name}]: providers and models do not apply to an admin key; "
                             "remove them (an admin sees every session)")
        return self


class ConsoleConfig(_Model):
    """The web console (`lunaroute console`; under `lunaroute up` when `enabled`). Loopback without
    keys by default; any other `host` needs `admin_keys`. `allowed_hosts`: the Host names it answers
    (default: the local names on loopback, any behind admin keys). `secure_cookies`: mark the login
    cookie `Secure` (set it when a TLS proxy fronts the console). `key_holders_see_own_sessions`: a
    gateway key logs in too and sees its own sessions only."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8081, ge=1, le=65535)
    admin_keys: list[AdminKey] = []
    allowed_hosts: list[str] | None = None
    secure_cookies: bool = False
    key_holders_see_own_sessions: bool = False
    login_hours: float = Field(12, gt=0, le=24 * 30)

    def check_exposure(self, host: str | None = None) -> None:
        """Refuse a bind other machines can reach without an admin key to log in with."""
        host = host or self.host
        if not is_loopback(host) and not self.admin_keys:
            raise ConfigError(f"console.host: {host} is reachable from other machines and console.admin_keys is "
                              "empty, so anyone who reaches it would read every recorded prompt; add an admin key "
                              "(`lunaroute keys new --admin`) or bind 127.0.0.1")

    def admin_digests(self, env: dict[str, str] | None = None) -> dict[str, AdminKey]:
        """Each admin key's SHA-256 digest → its entry; reads key_env / key_file now."""
        return {key.digest(env): key for key in self.admin_keys}


class Access(_Model):
    """Who may use the gateway. No keys: anyone who can reach the listener (fine on loopback, refused
    elsewhere unless `allow_anonymous`). Checked by Envoy's first filter (envoy/gate.lua)."""

    keys: list[GatewayKey] = []
    allow_anonymous: bool = False
    # Host names the listener answers (DNS rebinding): default the local names without keys, any with.
    allowed_hosts: list[str] | None = None
    # Browser origins allowed besides local ones (http://localhost:*, http://127.0.0.1:*); "*": any.
    allowed_origins: list[str] = []

    @model_validator(mode="after")
    def _unique(self) -> Access:
        names = [k.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"access.keys: the name {dupes[0]!r} is used twice; give every key its own name")
        digests = [k.key_sha256 for k in self.keys if k.key_sha256]
        if len(digests) != len(set(digests)):
            raise ValueError("access.keys: two keys have the same key_sha256; give every key its own key")
        return self

    @property
    def hosts(self) -> list[str]:
        """The Host names to answer ("*" = any)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return ["*"] if self.keys else list(LOCAL_HOSTS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Config(_Model):
    listen: Listen = Listen()
    admin: Admin = Admin()
    extproc: ExtProc = ExtProc()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    default_provider: str = ""  # empty: the first provider listed
    providers: dict[str, Provider] = Field(default_factory=dict)
    routing: Routing = Routing()
    bypass: Bypass = Bypass()
    pools: Pools = Pools()
    recording: Recording = Recording()
    pricing: dict[str, ModelPrice] = {}  # model glob → price, before the shipped defaults
    pii: Pii = Pii()
    budgets: BudgetsConfig = BudgetsConfig()
    access: Access = Access()
    rate_limits: list[RateLimit] = []  # see rate_limit_config
    tracing: Tracing = Tracing()
    console: ConsoleConfig = ConsoleConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _references(self) -> Config:
        if not self.providers:
            raise ValueError("providers: no provider is configured; add one, e.g. providers: {anthropic: "
                             "{type: anthropic, base_url: https://api.anthropic.com}}")
        for name in self.providers:
            if not _NAME.match(name):
                raise ValueError(f"providers.{name}: invalid name {name!r}; use lowercase letters, digits, "
                                 "'-' and '_' (it appears in markers and cluster names)")
        if not self.default_provider:
            object.__setattr__(self, "default_provider", next(iter(self.providers)))
        self._known("default_provider", self.default_provider)
        if self.bypass.provider is not None:
            self._known("bypass.provider", self.bypass.provider)
        for name in self.budgets.daily_tokens:
            self._known(f"budgets.daily_tokens.{name}", name)
        names = [b.name for b in self.budgets.limits]
        for dup in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"budgets.limits: the name {dup!r} is used twice; give each limit its own name")
        for key in self.access.keys:
            for j, name in enumerate(key.providers):
                self._known(f"access.keys[{key.name}].providers[{j}]", name)
        if not is_loopback(self.listen.host) and not self.access.keys and not self.access.allow_anonymous:
            raise ValueError(
                f"listen.host: {self.listen.host} is reachable from other machines and access.keys is empty, so "
                "anyone who reaches it would spend your providers' keys; add access.keys (README: Security), "
                "or set access.allow_anonymous: true if a firewall or a loopback-only port mapping protects it")
        key_names = {k.name for k in self.access.keys}
        for i, lim in enumerate(self.rate_limits):
            if lim.provider is not None:
                self._known(f"rate_limits[{i}].provider", lim.provider)
            elif lim.key != "*" and lim.key not in key_names:
                hint = difflib.get_close_matches(lim.key or "", key_names, n=1)
                raise ValueError(f"rate_limits[{i}].key: no gateway key is named {lim.key!r}; " + (
                    f"did you mean {hint[0]!r}?" if hint else "name one of access.keys, or \"*\" for each key"))
        if self.console.enabled and not is_loopback(self.console.host) and not self.console.admin_keys:
            raise ValueError(f"console.host: {self.console.host} is reachable from other machines and "
                             "console.admin_keys is empty, so anyone who reaches it would read every recorded "
                             "prompt; add an admin key (`lunaroute keys new --admin`) or bind 127.0.0.1")
        for i, rule in enumerate(self.routing.rules):
            self._known(f"routing.rules[{i}].provider", rule.provider)
            for j, fb in enumerate(rule.fallbacks):
                self._known(f"routing.rules[{i}].fallbacks[{j}]", fb)
        return self

    def _known(self, key: str, name: str) -> None:
        if name not in self.providers:
            hint = difflib.get_close_matches(name, self.providers, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"use one of {sorted(self.providers)}"
            raise ValueError(f"{key}: unknown provider {name!r}; {fix}")

    @property
    def bypass_provider(self) -> str:
        return self.bypass.provider or self.default_provider

    def check_secrets(self) -> None:
        """Fail early when a provider's key is not where the config says; never reads the key."""
        for name, p in self.providers.items():
            for key in p.pool:
                where = f"providers.{name}.keys[{key.name}]" if p.keys else f"providers.{name}"
                if key.api_key_env and not os.environ.get(key.api_key_env):
                    raise ConfigError(f"{where}.api_key_env: environment variable {key.api_key_env} is "
                                      f"not set; export it, or use api_key_file")
                if key.api_key_file and not os.access(os.path.expanduser(key.api_key_file), os.R_OK):
                    raise ConfigError(f"{where}.api_key_file: {key.api_key_file!r} is not a readable "
                                      f"file; create it with the key as its only content")
        self.pii.secret(dict(os.environ))
        self.key_digests()
        if self.console.enabled:
            self.console.admin_digests()

    def key_digests(self, env: dict[str, str] | None = None) -> dict[str, GatewayKey]:
        """Each gateway key's SHA-256 digest → its entry; reads key_env / key_file now."""
        out: dict[str, GatewayKey] = {}
        for key in self.access.keys:
            digest = key.digest(env)
            if digest in out:
                raise ConfigError(f"access.keys[{key.name}]: the same key as access.keys[{out[digest].name}]; "
                                  "give every key its own key")
            out[digest] = key
        return out

    @property
    def secret_env_vars(self) -> frozenset[str]:
        """Environment variables that hold keys: for Envoy (providers) and the renderer (gateway keys)
        only, never for the Python workers."""
        names = {k.api_key_env for p in self.providers.values() for k in p.pool if k.api_key_env}
        names |= {k.key_env for k in (*self.access.keys, *self.console.admin_keys) if k.key_env}
        return frozenset(names)


DEFAULTS: dict[str, Any] = {
    "default_provider": "anthropic",
    "providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
    },
}


def _truthy(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={value!r} is not a boolean; set it to true or false")


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    bypass = dict(raw.get("bypass") or {})
    if "LUNAROUTE_BYPASS_ENABLED" in env:
        bypass["enabled"] = _truthy("LUNAROUTE_BYPASS_ENABLED", env["LUNAROUTE_BYPASS_ENABLED"])
    if env.get("LUNAROUTE_BYPASS_PROVIDER"):
        bypass["provider"] = env["LUNAROUTE_BYPASS_PROVIDER"]
    if bypass:
        raw = {**raw, "bypass": bypass}
    return raw


def _describe(err: dict[str, Any], model_fields: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after[_references()]",))
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        last = str(err["loc"][-1])
        hint = difflib.get_close_matches(last, model_fields, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else "remove it (see README: configuration reference)"
        return f"{loc}: unknown key; {fix}"
    if kind == "missing":
        return f"{loc}: required key is missing; add it (see README: configuration reference)"
    if kind == "value_error" and not loc:
        return msg
    value = err.get("input")
    shown = "" if kind == "value_error" or isinstance(value, dict | list) else f" (got {value!r})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


def _all_field_names() -> list[str]:
    names: set[str] = set()
    for m in (Config, Listen, Admin, ExtProc, Limits, Timeouts, Retries, Provider, Rule, Routing, Bypass,
              Recording, Pii, Pricing, ModelPrice, BudgetsConfig, BudgetLimit, ToolSchema, Access, GatewayKey,
              PoolKey, Pools):
        names.update(m.model_fields)
    return sorted(names)


def parse(raw: Any, env: dict[str, str] | None = None, source: str = "config") -> Config:
    """Validate a decoded YAML document; raise ConfigError with one teaching line."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if "providers" not in raw:
        raw = {**DEFAULTS, **raw}
    raw = _apply_env(raw, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # An unknown key usually explains a "missing" one next to it: report it first.
        first = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(f"{source}: {_describe(first, _all_field_names())}") from None


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the config file (argument, then $LUNAROUTE_CONFIG), or the embedded defaults."""
    env = dict(os.environ) if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    if path is None:
        return parse({}, env, source="defaults")
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check the path") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    return parse(raw, env, source=str(path))


# Model families whose quirks real providers enforce with a 400 (checked by `lunaroute check`).
_OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")
_REASONING_ONLY_CAP = ("gpt-5*", "o1*", "o3*", "o4*")  # OpenAI: max_completion_tokens, never max_tokens
_NO_REASONING = ("gpt-4*", "gpt-3.5*", "chatgpt-*", "gpt-5*-chat*", "deepseek-chat")  # reject reasoning_effort


def warnings(cfg: Config) -> list[str]:
    """Combinations that validate but that the provider they name rejects at the first request, each
    with its fix: a config that fits its providers prints none."""
    out: list[str] = []
    for name, p in cfg.providers.items():
        if p.type != "openai":
            continue
        models = list(dict.fromkeys([*([p.model] if p.model else []), *p.models]))
        host = urlsplit(p.base_url).hostname or ""
        capped = [m for m in models if any(fnmatchcase(m, g) for g in _REASONING_ONLY_CAP)]
        if capped and p.max_tokens_field == "max_tokens" and host.endswith(_OPENAI_HOSTS):
            out.append(f"providers.{name}: OpenAI rejects max_tokens for {', '.join(capped)} ('Use "
                       "max_completion_tokens instead'); set max_tokens_field: max_completion_tokens")
        plain = [m for m in models if any(fnmatchcase(m, g) for g in _NO_REASONING)]
        if plain and p.reasoning_effort:
            out.append(f"providers.{name}: {', '.join(plain)} do(es) not reason and reject reasoning_effort; "
                       "set reasoning_effort: false")
    return out
