"""Who may use the gateway: gateway keys (their digests, never the keys), the console's admin keys,
allowed hosts and origins."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from .base import ConfigError, _Model

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
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
    port: int = Field(default=8081, ge=1, le=65535)
    admin_keys: list[AdminKey] = []
    allowed_hosts: list[str] | None = None
    secure_cookies: bool = False
    key_holders_see_own_sessions: bool = False
    login_hours: float = Field(default=12, gt=0, le=24 * 30)

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
