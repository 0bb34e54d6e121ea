"""The request phase's decisions, as pure functions: classify → admit → route → plan.

Nothing here does I/O or keeps state between requests; each stage takes what Envoy sent (header dicts,
the parsed body) and returns plain data, so each is tested by table. `exchange` runs them in order and
acts on the result.

- `read_request`: what the headers say (path, kind, client dialect, the gate's verdict on the key).
- `route`: which providers, in which order, with which model each, and why — one frozen `Plan`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import orjson
import re2

from . import paths
from .attempts import usable_chain
from .dialects.base import Dialect
from .errors import TOO_DEEP, ClientError
from .gateway import Gateway
from .markers import NO_MARKER, PREFIX, take_marker
from .observe import metrics
from .paths import Kind
from .routing import pop_preferences, request_model
from .session_id import session_id
from .wire import CLIENT_HEADER, SCOPE_HEADER

log = logging.getLogger("lunaroute")
MARKER_BYTES = PREFIX.encode()
# Top-level fields the gateway reads to route, meter and reserve: a body that goes on as sent and names
# one twice is refused, because the gateway reads the last and the provider may read the first. The
# pattern finds their scalar values (one re2 scan of the body); only a field found twice is checked
# for real (a tool schema's `"model": {...}` property is no string, and escaped quotes never match).
_ROUTED_VALUES = re2.compile(rb'"(model"\s*:\s*"|stream"\s*:\s*[tf]|max_(?:completion_|output_)?tokens"\s*:\s*\d)')


@dataclass(frozen=True, slots=True)
class AllowList:
    """What a gateway key may use (`providers`, `models`; empty: anything). The gate wrote it."""

    providers: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> AllowList | None:
        if not value:
            return None
        raw = orjson.loads(value)
        return cls(frozenset(raw.get("providers") or ()), tuple(raw.get("models") or ()))

    def allows_provider(self, name: str) -> bool:
        return not self.providers or name in self.providers

    def allows_model(self, model: str | None) -> bool:
        return not self.models or (model is not None and any(fnmatchcase(model, g) for g in self.models))


@dataclass(slots=True)
class RequestLine:
    """What the request headers say, read once."""

    method: str = ""
    path: str = ""
    query: str = ""
    kind: Kind = Kind.BYPASS
    client: Dialect = "anthropic"
    headers: dict[str, str] = field(default_factory=dict)
    key: str = ""  # the gateway key's name ("" without keys)
    allow: AllowList | None = None
    encoded: bool = False  # the client compressed the body (content-encoding); Python reads it decoded


def read_request(headers: dict[str, str], sealed: bool) -> RequestLine:
    """The request line and, behind the gateway's own gate (`sealed`), the key it verified."""
    path, query = paths.split_path(headers.get(":path", "/"))
    method = headers.get(":method", "GET")
    kind = paths.classify(method, path)
    line = RequestLine(method, path, query, kind, paths.client_dialect(kind, headers), headers)
    if sealed:
        line.key = headers.get(CLIENT_HEADER, "")
        line.allow = AllowList.parse(headers.get(SCOPE_HEADER))
    return line


@dataclass(frozen=True, slots=True)
class Plan:
    """Where one request goes: `chain[0]` first, then its fallbacks; `models[name]` is the model that
    provider gets (None: the request names none)."""

    chain: tuple[str, ...]
    models: dict[str, str | None]
    reason: str
    client_model: str | None  # the model the request named (or X-Model)
    session: str | None
    changed: bool  # the body was changed (markers, preferences, redaction): it must be re-serialised

    @property
    def provider(self) -> str:
        return self.chain[0]

    @property
    def model(self) -> str | None:
        return self.models[self.chain[0]]

    def overrides(self) -> dict[str, str]:
        """Providers whose model differs from the request's, for the attempts of a chain."""
        return {n: m for n, m in self.models.items() if m and m != self.client_model}


class Refused(ClientError):
    """A request the plan refuses (an allow-list, a duplicate field); `kind` labels the error metric."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, kind: str = "bad_request") -> None:
        super().__init__(message, param, status)
        self.kind = kind


def refuse_duplicates(raw: bytes) -> None:
    """A routed field named twice at the top level of a body that goes on as sent is refused."""
    found = [m.split(b'"', 1)[0].decode() for m in _ROUTED_VALUES.findall(raw)]
    suspects = {f for f in found if found.count(f) > 1}
    if not suspects:
        return
    top: list[list[tuple[str, object]]] = []

    def remember(pairs: list[tuple[str, object]]) -> dict:
        top.append(pairs)  # the top-level object is the last one the decoder closes
        return {}

    try:
        json.loads(raw, object_pairs_hook=remember)
    except ValueError:
        return  # orjson read it; a stricter reader's complaint is not the client's duplicate
    except RecursionError as exc:
        raise Refused(TOO_DEEP, None, 400, "bad_json") from exc
    names = [name for name, _ in top[-1]] if top else []
    for f in suspects:
        if names.count(f) > 1:
            raise Refused(f"the request body names {f!r} more than once; send each field once", f)


def allowed_chain(gw: Gateway, line: RequestLine, chain: tuple[str, ...], models: dict[str, str | None]
                  ) -> tuple[str, ...]:
    """The chain less what the key may not use; the first provider must be allowed (else a 403)."""
    chain = usable_chain(gw.cfg, chain)
    allow = line.allow
    if allow is None:
        return chain
    refuse_out_of_list(line, chain[0], models.get(chain[0]))
    return tuple(n for n in chain if allow.allows_provider(n) and allow.allows_model(models.get(n)))


def refuse_out_of_list(line: RequestLine, name: str, model: str | None, check_model: bool = True) -> None:
    """A 403 when the gateway key's allow-list does not hold this provider (or model)."""
    allow, key = line.allow, line.key
    if allow is None:
        return
    if not allow.allows_provider(name):
        raise Refused(f"the gateway key {key!r} may not use provider {name!r}", None, 403, "forbidden")
    if check_model and not allow.allows_model(model):
        raise Refused(f"the gateway key {key!r} may not use model {model!r}", "model", 403, "forbidden")


def route(gw: Gateway, line: RequestLine, doc: dict, raw: bytes, redacted: bool) -> Plan:
    """Marker > preferences > rules > default; each provider's model; the key's allow-list applied.
    Strips markers and preferences from `doc` in place (they are the gateway's, not the provider's)."""
    headers = line.headers
    # The substring test on the raw bytes spares the walk through messages for nearly every request.
    marker, changed = take_marker(doc, line.client, gw.provider_names) if MARKER_BYTES in raw else (NO_MARKER, False)
    if marker.kind == "unknown":
        metrics.UNKNOWN_MARKERS.inc()
        log.warning("unknown provider in marker [LUNAROUTE:%s]; routing by default", str(marker.name)[:100])
    prefs_value, popped = pop_preferences(doc)
    prefs = gw.router.parse_preferences(prefs_value, headers.get("x-provider"))
    model = request_model(doc.get("model"), headers.get("x-model"))
    decision = gw.router.decide(marker, prefs, model, line.path)
    models = {n: (m or model) for n, m in zip(decision.chain, decision.overrides, strict=True)}
    chain = allowed_chain(gw, line, decision.chain, models)
    return Plan(chain, {n: models[n] for n in chain}, decision.reason, model, session_id(headers, doc),
                changed or popped or redacted)
