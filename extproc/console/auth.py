"""Who may read the console, and the guard in front of every request.

- Loopback without admin keys: whoever can reach 127.0.0.1 is the operator (the default, like the
  gateway itself). With admin keys (required off loopback): a login form takes a key, its SHA-256 is
  compared with the configured digests, and the browser gets a random server-side token in a cookie
  (`HttpOnly`, `SameSite=Strict`, `Secure` when configured) — never the key or anything derived from
  it. A cookie the server did not hand out is nobody. Tokens live in memory: a restart logs out.
- `key_holders_see_own_sessions`: a gateway key logs in too, and sees only its own sessions, spend and
  budgets (the pages pass its name as a filter).
- The guard: the Host header must be one the console answers (DNS rebinding); a POST must come from
  the console's own pages (`Sec-Fetch-Site`, `Origin`) and carry the form's CSRF token; every answer
  has a strict Content-Security-Policy (no script at all), `no-store`, `nosniff` and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import LOCAL_HOSTS, Config, GatewayKey, is_loopback

COOKIE = "lr_console"
CSRF_COOKIE = "lr_console_csrf"
_MAX_LOGINS = 1000
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form POSTs say `Origin: null`
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the operator (`admin`, or `local` on a keyless loopback console) or a gateway
    key's holder, who sees only `key`'s sessions. `csrf` goes into every form they are shown."""

    role: Literal["admin", "local", "holder"]
    name: str
    csrf: str

    @property
    def key(self) -> str | None:
        """The gateway key name every query is narrowed to; None: everything."""
        return self.name if self.role == "holder" else None


class Logins:
    """Admin and (optionally) key-holder digests, and the tokens handed out to logged-in browsers."""

    def __init__(self, cfg: Config, env: dict[str, str] | None = None) -> None:
        self.admins = cfg.console.admin_digests(env)
        self.holders: dict[str, GatewayKey] = cfg.key_digests(env) if cfg.console.key_holders_see_own_sessions else {}
        self.ttl_s = cfg.console.login_hours * 3600
        # open (no login) only on loopback with nobody to log in: key holders need a login to be told apart
        self.open = not self.admins and not self.holders and is_loopback(cfg.console.host)
        self._local = Viewer("local", "local", secrets.token_urlsafe(24))
        self._tokens: OrderedDict[str, tuple[Viewer, float]] = OrderedDict()

    def login(self, key: str) -> tuple[str, Viewer] | None:
        """A new token for a valid key; None otherwise. Every digest is compared in constant time."""
        digest = hashlib.sha256(key.strip().encode()).hexdigest()
        viewer = None
        for known, entry in self.admins.items():
            if hmac.compare_digest(known, digest):
                viewer = Viewer("admin", entry.name, secrets.token_urlsafe(24))
        for known, gateway_key in self.holders.items():
            if hmac.compare_digest(known, digest) and viewer is None:
                viewer = Viewer("holder", gateway_key.name, secrets.token_urlsafe(24))
        if viewer is None:
            return None
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (viewer, time.monotonic() + self.ttl_s)
        while len(self._tokens) > _MAX_LOGINS:
            self._tokens.popitem(last=False)
        return token, viewer

    def viewer(self, cookies: dict[str, str]) -> Viewer | None:
        if self.open:
            return self._local
        found = self._tokens.get(cookies.get(COOKIE, ""))
        if found is None:
            return None
        viewer, expires = found
        if time.monotonic() > expires:
            self._tokens.pop(cookies.get(COOKIE, ""), None)
            return None
        return viewer

    def logout(self, cookies: dict[str, str]) -> None:
        self._tokens.pop(cookies.get(COOKIE, ""), None)


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def allowed_hosts(cfg: Config) -> list[str]:
    """The Host names the console answers: `console.allowed_hosts`, else the local names on a loopback
    bind and any name behind admin keys."""
    if cfg.console.allowed_hosts is not None:
        return cfg.console.allowed_hosts
    return list(LOCAL_HOSTS) if is_loopback(cfg.console.host) else ["*"]


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: Host check, cross-site POST refusal, security headers on every answer."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal = None
        if not self.any_host and _hostname(host).lower() not in self.hosts:
            refusal = (421, "this console does not answer for that Host (console.allowed_hosts)")
        elif scope["method"] not in ("GET", "HEAD") and _cross_site(headers, host):
            refusal = (403, "cross-site request refused")

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if refusal is not None:
            await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


def _cross_site(headers: Headers, host: str) -> bool:
    """A state-changing request a browser sent from another site: `Sec-Fetch-Site` says so, or the
    `Origin` is not this console's own."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    return origin is not None and origin not in (f"http://{host}", f"https://{host}")  # https: behind a TLS proxy
