"""Where a request goes: pure decision code, built once from the config and asked once per request.

Precedence (first that applies wins):

1. **marker** — `[LUNAROUTE:name]` in the turn's prompt (see `markers`). An explicit choice: the chain is
   that one provider, no fallbacks. `clear` and unknown names fall through to the next step.
2. **preferences** — an OpenRouter-style `provider` object in the body, or the `X-Provider` header
   holding the same object as JSON (for clients such as Claude Code that cannot add body fields). When
   both are present the body object wins whole (it is the more specific one); they are not merged.
3. **rule** — the first `routing.rules` entry matching the model (highest `priority` first, ties in config
   order): its provider, then its fallbacks.
4. **default** — `default_provider`, no fallbacks.

Every chain holds only providers eligible for the request's path, without duplicates. Eligibility:
`endpoint_prefixes` are the paths the provider *itself* serves, so they are checked against the path the
provider will receive — after translation (`provider_path`): an OpenAI-type provider listing
`/v1/chat/completions` serves Claude Code's `/v1/messages`. A prefix matches whole path segments.

Preferences, decided:

- Candidates start as the *natural* chain (what rules or the default would pick) followed by every other
  provider in config order; `only` filters (it does not reorder), `ignore` removes, then `sort` reorders
  (stable: ties keep the natural order), then providers named in `order` move to the front in that order.
- `sort: price` uses `input_per_mtok + output_per_mtok`; providers without `pricing` go last.
  `sort: latency` (EWMA time to first byte, lower first) and `sort: throughput` (EWMA output tokens per
  second, higher first) use `Observed`; providers never observed go after observed ones, in natural order
  (we know nothing about them, so we do not gamble on them first).
- `allow_fallbacks: false` keeps only the providers named in `order` (as OpenRouter does), or only the
  first candidate when `order` names none of them.
- An empty object (or one that only says `allow_fallbacks: true`) changes nothing and counts as absent;
  so does `only: []` (OpenRouter-style templates send it meaning "no allow-list").
- Names are matched case-insensitively (config names are lower case). Unknown keys, wrong types and
  unknown provider names are a `RoutingError` (a 400 naming the field): silently ignoring, say, an
  OpenRouter privacy constraint this gateway does not implement would be worse than refusing it.

Model, decided: the `X-Model` header wins over the body's `model` (`request_model`); it exists for clients
that cannot change the body. Model override (`Decision.overrides`, one per chain entry): a provider's
configured `model` replaces the request's model when the provider was chosen by marker (always, as the
design says), and, for preferences and for rule fallbacks, when the provider is neither the natural
provider for the model nor advertises it in `models`. Rule primaries and the default keep the request's
model: the rule (or the operator's default) already says that provider serves it.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .config import Config, Provider
from .errors import ClientError
from .markers import Marker

Reason = Literal["marker", "preferences", "rule", "default"]
Sort = Literal["price", "latency", "throughput"]

_SORTS: tuple[Sort, ...] = ("price", "latency", "throughput")
_PREF_KEYS = ("only", "ignore", "order", "allow_fallbacks", "sort")
_TRANSLATABLE = frozenset({"anthropic", "openai", "openai-responses"})
# Client path -> the path a provider of another dialect receives (mirrors the translators' request_path).
_TRANSLATED_PATHS = {
    "/v1/messages": {"openai": "/v1/chat/completions", "openai-responses": "/v1/responses"},
    "/v1/messages/count_tokens": {"openai": "/v1/chat/completions", "openai-responses": "/v1/responses"},
    "/v1/chat/completions": {"anthropic": "/v1/messages", "openai-responses": "/v1/responses"},
    "/v1/responses": {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"},
    "/v1/responses/input_tokens": {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"},
}


class RoutingError(ClientError):
    """A request the gateway cannot route as asked; the caller answers it in the client's dialect.

    `param` names the offending field (e.g. ``"provider.only"``, ``"X-Provider"``, ``"model"``).
    """


@dataclass(frozen=True, slots=True)
class Preferences:
    """Validated provider preferences; names are known, lower-case provider names."""

    only: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: Sort | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The providers to try in order (first = chosen), why, and the model each one gets.

    `overrides[i]` is the model to send to `chain[i]`, or None to keep the request's model.
    """

    chain: tuple[str, ...]
    reason: Reason
    overrides: tuple[str | None, ...]


class Observed:
    """Per-provider speed, as exponentially weighted moving averages (recent requests weigh more).

    One instance per worker process; the response phase feeds it, `sort: latency|throughput` reads it.
    """

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self._ttfb: dict[str, float] = {}
        self._tps: dict[str, float] = {}

    def observe(self, provider: str, ttfb_s: float, tokens: int, duration_s: float) -> None:
        """Record one finished response: time to first byte, output tokens, total duration."""
        if ttfb_s >= 0:
            self._ttfb[provider] = self._mix(self._ttfb.get(provider), ttfb_s)
        generating = duration_s - ttfb_s if duration_s > ttfb_s else duration_s
        if tokens > 0 and generating > 0:
            self._tps[provider] = self._mix(self._tps.get(provider), tokens / generating)

    def ttfb(self, provider: str) -> float | None:
        return self._ttfb.get(provider)

    def throughput(self, provider: str) -> float | None:
        return self._tps.get(provider)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)


def provider_path(client_path: str, provider_type: str) -> str:
    """The path a provider of `provider_type` receives for the client's path (query removed)."""
    path = client_path.split("?", 1)[0]
    return _TRANSLATED_PATHS.get(path, {}).get(provider_type, path)


def request_model(body_model: Any, header_model: str | None) -> str | None:
    """The model to route by: `X-Model` wins over the body's `model`; a non-string body model is a 400."""
    if header_model is not None and header_model.strip():
        return header_model.strip()
    if body_model is None:
        return None
    if not isinstance(body_model, str):
        raise RoutingError(f"model must be a string, got {_kind(body_model)}; send e.g. \"model\": "
                           "\"claude-sonnet-4-5\"", "model")
    return body_model


def pop_preferences(body: dict[str, Any]) -> tuple[Any, bool]:
    """Take the `provider` object out of the body (no provider API knows it); returns (value, changed).

    `changed` is True whenever the key was present, even as null, so the caller re-serialises.
    """
    if "provider" not in body:
        return None, False
    return body.pop("provider"), True


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    index: int
    match: re.Pattern[str]
    chain: tuple[str, ...]
    priority: int


class Router:
    """Routing decisions for one config; rules are compiled once, here, not per request."""

    def __init__(self, config: Config, observed: Observed | None = None) -> None:
        self.config = config
        self.providers: dict[str, Provider] = dict(config.providers)
        self.observed = observed or Observed()
        self._rules = sorted(self._compile(config), key=lambda r: (-r.priority, r.index))

    @staticmethod
    def _compile(config: Config) -> list[_CompiledRule]:
        """Globs become regexes too, so matching is one `fullmatch` (config already checked the regexes)."""
        rules = []
        for i, rule in enumerate(config.routing.rules):
            source = fnmatch.translate(rule.model) if rule.model is not None else rule.model_regex or ""
            chain = tuple(dict.fromkeys((rule.provider, *rule.fallbacks)))
            rules.append(_CompiledRule(i, re.compile(source), chain, rule.priority))
        return rules

    def ordered_rules(self) -> list[tuple[int, tuple[str, ...]]]:
        """(index in `routing.rules`, chain) in the order `decide` tries them; the Envoy fast path is
        rendered from this, so both walk the rules the same way."""
        return [(r.index, r.chain) for r in self._rules]

    def eligible_chain(self, names: Iterable[str], path: str) -> list[str]:
        """`names` that serve `path`, without duplicates, in order."""
        return self._eligible(names, path)

    # -- eligibility ---------------------------------------------------------------------------------

    def eligible(self, name: str, path: str) -> bool:
        """Whether provider `name` serves `path` (the client's path; checked as the provider sees it)."""
        provider = self.providers[name]
        if provider.type not in _TRANSLATABLE:
            return False
        if not provider.endpoint_prefixes:
            return True
        target = provider_path(path, provider.type)
        return any(target == p or target.startswith(p.rstrip("/") + "/") for p in provider.endpoint_prefixes)

    def _eligible(self, names: Iterable[str], path: str) -> list[str]:
        return [n for n in dict.fromkeys(names) if self.eligible(n, path)]

    # -- the decision --------------------------------------------------------------------------------

    def decide(self, marker: Marker, prefs: Preferences | None, model: str | None, path: str) -> Decision:
        """Pick the provider chain for one request (precedence in the module docstring)."""
        if marker.kind == "provider" and marker.name is not None:
            name = marker.name
            if not self.eligible(name, path):
                raise RoutingError(
                    f"[LUNAROUTE:{name}] chose provider {name!r}, which does not serve {path.split('?')[0]} "
                    f"(its endpoint_prefixes are {self.providers[name].endpoint_prefixes}); choose another "
                    "provider or add the path to its endpoint_prefixes", "messages")
            return Decision((name,), "marker", (self.model_for(name, model, None, path),))
        natural, reason = self._natural(model, path)
        if prefs is not None:
            chain = self._by_preferences(prefs, natural, path)
            return Decision(chain, "preferences", self._overrides(chain, natural, model, path))
        if reason == "rule":
            return Decision(natural, "rule", self._overrides(natural, natural, model, path))
        return Decision(natural[:1], "default", self._overrides(natural[:1], natural, model, path))

    def _natural(self, model: str | None, path: str) -> tuple[tuple[str, ...], Reason]:
        """The chain rules (or else the default) give this model, eligible providers only."""
        if model is not None:
            for rule in self._rules:
                if rule.match.fullmatch(model):
                    chain = self._eligible(rule.chain, path)
                    if chain:
                        return tuple(chain), "rule"
        chain = self._eligible((self.config.default_provider, *self.providers), path)
        if not chain:
            raise RoutingError(f"no configured provider serves {path.split('?')[0]}; add it to a provider's "
                               "endpoint_prefixes", None, 404)
        return tuple(chain[:1]), "default"

    def _by_preferences(self, prefs: Preferences, natural: tuple[str, ...], path: str) -> tuple[str, ...]:
        candidates = [
            n for n in self._eligible((*natural, *self.providers), path)
            if (prefs.only is None or n in prefs.only) and n not in prefs.ignore
        ]
        if prefs.sort is not None:
            candidates.sort(key=self._sort_key(prefs.sort))
        if prefs.order:
            first = [n for n in prefs.order if n in candidates]
            candidates = first + [n for n in candidates if n not in first]
        if not candidates:
            only = list(prefs.only or [])
            raise RoutingError(
                f"provider preferences leave no provider for {path.split('?')[0]} (only={only}, "
                f"ignore={list(prefs.ignore)}; providers serving this path: "
                f"{self._eligible(self.providers, path)}); widen only or shorten ignore", "provider")
        if not prefs.allow_fallbacks:
            listed = [n for n in candidates if n in prefs.order]
            candidates = listed or candidates[:1]
        return tuple(candidates)

    def _sort_key(self, sort: Sort):  # noqa: ANN202 - a key function for list.sort
        """Key functions return (group, value): group 0 = known, 1 = unknown (sorted last, stable)."""
        if sort == "price":
            def price(n: str) -> tuple[int, float]:
                p = self.providers[n].pricing
                return (1, 0.0) if p is None else (0, p.input_per_mtok + p.output_per_mtok)
            return price
        if sort == "latency":
            def latency(n: str) -> tuple[int, float]:
                v = self.observed.ttfb(n)
                return (1, 0.0) if v is None else (0, v)
            return latency

        def throughput(n: str) -> tuple[int, float]:
            v = self.observed.throughput(n)
            return (1, 0.0) if v is None else (0, -v)
        return throughput

    def _overrides(
        self, chain: Iterable[str], natural: tuple[str, ...], model: str | None, path: str
    ) -> tuple[str | None, ...]:
        return tuple(self.model_for(n, model, natural[0], path) for n in chain)

    def model_for(self, name: str, model: str | None, natural: str | None, path: str) -> str | None:
        """The model override for provider `name` when it serves a request it was not the natural pick for
        (`natural` None: a marker chose it). The one place that decides the model sent: the request phase
        sets it in the body, and translators and fallback attempts keep it.

        None keeps the request's model: the provider has no `model`, advertises the model in `models` (a
        model the user picked from `/v1/models`), or is the natural provider for this model and speaks the
        client's dialect (a translated request's model is the other vendor's name: it gets the override).
        The fast path forwards only natural, same-dialect picks, so it never needs an override.
        """
        provider = self.providers[name]
        if provider.model is None or (name == natural and provider_path(path, provider.type) == path.split("?")[0]):
            return None
        if model is not None and model in provider.models:
            return None
        return provider.model

    # -- preferences ---------------------------------------------------------------------------------

    def parse_preferences(self, body_value: Any, header_value: str | bytes | None) -> Preferences | None:
        """Validate preferences from the body's `provider` object, else from the `X-Provider` header."""
        if body_value is not None:
            return self._preferences(body_value, "provider", "provider")
        if header_value is None or not header_value.strip():
            return None
        try:
            raw = orjson.loads(header_value)
        except orjson.JSONDecodeError as exc:
            raise RoutingError(f"X-Provider header is not valid JSON ({exc}); send an object such as "
                               '{"order": ["anthropic"], "allow_fallbacks": false}', "X-Provider") from None
        return self._preferences(raw, "X-Provider", "X-Provider header")

    def _preferences(self, raw: Any, param: str, where: str) -> Preferences | None:
        if not isinstance(raw, dict):
            raise RoutingError(f"{where} must be a JSON object, got {_kind(raw)}; send e.g. "
                               '{"only": ["anthropic"]}', param)
        for key in raw:
            if key not in _PREF_KEYS:
                raise RoutingError(f"{where}: {key!r} is not supported by this gateway; remove it "
                                   f"(supported: {', '.join(_PREF_KEYS)})", f"{param}.{key}")
        allow = raw.get("allow_fallbacks", True)
        if not isinstance(allow, bool):
            raise RoutingError(f"{where}: allow_fallbacks must be true or false, got {_kind(allow)}",
                               f"{param}.allow_fallbacks")
        sort = raw.get("sort")
        if sort is not None and sort not in _SORTS:
            raise RoutingError(f"{where}: sort must be one of {', '.join(_SORTS)}, got {sort!r}",
                               f"{param}.sort")
        only = self._names(raw, "only", param, where)
        prefs = Preferences(
            only=only or None,  # an empty allow-list is what config templates send for "no filter"
            ignore=self._names(raw, "ignore", param, where),
            order=self._names(raw, "order", param, where),
            allow_fallbacks=allow,
            sort=sort,
        )
        return None if prefs == Preferences() else prefs

    def _names(self, raw: dict[str, Any], key: str, param: str, where: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise RoutingError(f"{where}: {key} must be a list of provider names, got {_kind(value)}; "
                               f'send e.g. "{key}": ["{next(iter(self.providers))}"]', f"{param}.{key}")
        names = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise RoutingError(f"{where}: {key}[{i}] must be a provider name (a string), got "
                                   f"{_kind(item)}", f"{param}.{key}")
            name = item.lower()
            if name not in self.providers:
                hint = difflib.get_close_matches(name, self.providers, n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else f"use one of {sorted(self.providers)}"
                raise RoutingError(f"{where}: {key}[{i}] names unknown provider {item!r}; {fix}",
                                   f"{param}.{key}")
            names.append(name)
        return tuple(dict.fromkeys(names))


def _kind(value: Any) -> str:
    """A JSON-ish type name for error messages (the client sent JSON, not Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
