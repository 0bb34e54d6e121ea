"""What the console shows beside the records: budgets with their use (read from the budget store the
workers write, never written), provider health from Envoy's own admin stats, the gateway keys and the
routing as configured. Names only: no key, digest or secret leaves this module — a gateway key is its
name and allow-lists, a provider's credential is the name of the variable or file that holds it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..envoy_admin import stats as envoy_stats
from ..observe.budgets import period_bounds
from ..wire import cluster_name

_PREFIX = "lunaroute:budget:"
_MAX_COUNTERS = 5000
_HEALTH = ("upstream_rq_total", "upstream_rq_4xx", "upstream_rq_5xx", "upstream_rq_timeout", "upstream_cx_connect_fail",
           "outlier_detection.ejections_active", "outlier_detection.ejections_enforced_total",
           "membership_healthy", "membership_total")


def _budget_counters(url: str, now: float) -> dict[str, float] | None:
    """Every live counter of the budget store (`lunaroute:budget:<limit>:<scope>:<period>` → used);
    None when the store cannot be read. Opened read-only: the console never changes a budget."""
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            names = []
            for name in client.scan_iter(match=_PREFIX + "*", count=500):
                names.append(name)
                if len(names) >= _MAX_COUNTERS:
                    break
            values = client.mget(names) if names else []
            return {n.decode(): float(v) for n, v in zip(names, values, strict=True) if v is not None}
        path = Path(os.path.expanduser(url.removeprefix("sqlite://")))
        if not path.exists():
            return {}
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            rows = db.execute("SELECT key, used FROM budget WHERE key LIKE ? AND expires > ? LIMIT ?",
                              (_PREFIX + "%", now, _MAX_COUNTERS)).fetchall()
        return {k: float(v) for k, v in rows}
    except Exception:  # noqa: BLE001 - a budget store that cannot be read is shown as such, not a 500
        return None


def budgets(cfg: Config, now: float | None = None, key: str | None = None) -> dict[str, Any]:
    """Each configured limit with the counters of its current period: scope, used, cap, share, when it
    resets. A limit whose scope has no glob is listed even before anything was spent. `key`: only the
    limits that can concern that gateway key (a key holder's view)."""
    now = time.time() if now is None else now
    limits = cfg.budgets.all_limits()
    counters = _budget_counters(cfg.budgets.store, now) if limits else {}
    rows = []
    for lim in limits:
        if key is not None and lim.key is None:
            continue
        period, resets = period_bounds(lim.period, now)
        unit, cap = ("usd", float(lim.usd)) if lim.usd is not None else ("tokens", float(lim.tokens or 0))
        found = {}
        for name, used in (counters or {}).items():
            head = f"{_PREFIX}{lim.name}:"
            if name.startswith(head) and name.endswith(f":{period}"):
                found[name[len(head):-len(period) - 1]] = used
        fixed = ":".join(f"{dim}={glob}" for dim, glob in (("key", lim.key), ("provider", lim.provider),
                                                            ("session", lim.session)) if glob is not None)
        if not found and not any(ch in fixed for ch in "*?["):
            found[fixed] = 0.0
        for scope, used in sorted(found.items()):
            if key is not None and f"key={key}" not in scope.split(":"):
                continue
            rows.append({"name": lim.name, "scope": scope, "unit": unit, "cap": cap, "used": round(used, 6),
                         "share": round(used / cap, 4) if cap else None, "period": lim.period,
                         "resets": resets})
    return {"store_readable": counters is not None, "limits": rows}


def provider_health(cfg: Config, socket_path: str | None, address: str | None) -> dict[str, dict[str, Any]]:
    """Per provider: Envoy's cluster counters (requests, 4xx/5xx, timeouts, connect failures, outlier
    ejections, healthy hosts) and a one-word state; `unknown` when Envoy's admin is not reachable."""
    found = None
    if socket_path or address:
        names = "|".join(cluster_name(p) for p in cfg.providers)
        metrics = "|".join(m.replace(".", r"\.") for m in _HEALTH)
        found = envoy_stats(rf"^cluster\.({names})\.({metrics})$", socket_path, address)
    out = {}
    for provider in cfg.providers:
        if found is None:
            out[provider] = {"state": "unknown"}
            continue
        prefix = f"cluster.{cluster_name(provider)}."
        values = {m: found.get(prefix + m) for m in _HEALTH}
        ejected = values["outlier_detection.ejections_active"] or 0
        healthy = values["membership_healthy"]
        state = "ejected" if ejected or healthy == 0 else "healthy"
        out[provider] = {"state": state, **{m.replace("outlier_detection.", ""): v for m, v in values.items()}}
    return out


def gateway_keys(cfg: Config) -> list[dict[str, Any]]:
    """The gateway keys by name with their allow-lists and where the key lives (env or file name,
    `digest in config` otherwise) — never the key or its digest."""
    out = []
    for k in cfg.access.keys:
        source = (f"env {k.key_env}" if k.key_env else f"file {k.key_file}" if k.key_file else "digest in config")
        out.append({"name": k.name, "providers": list(k.providers), "models": list(k.models), "source": source})
    return out


def providers(cfg: Config) -> list[dict[str, Any]]:
    """Each provider: type, base URL, how it authenticates (a variable or file *name*), its models."""
    out = []
    for name, p in cfg.providers.items():
        auth = (f"env {p.api_key_env}" if p.api_key_env else f"file {p.api_key_file}" if p.api_key_file
                else "the client's own key (passthrough)")
        url = urlsplit(p.base_url)
        base = f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}{url.path}"  # no userinfo, query
        out.append({"name": name, "type": p.type, "base_url": base, "credential": auth,
                    "models": list(dict.fromkeys([*([p.model] if p.model else []), *p.models])),
                    "default": name == cfg.default_provider})
    return out


def routing(cfg: Config) -> dict[str, Any]:
    """The effective routing: rules in the order they are tried, with their fallback chains, the
    default provider, the marker names that switch providers, and the bypass."""
    order = sorted(enumerate(cfg.routing.rules), key=lambda item: (-item[1].priority, item[0]))
    rules = [{"match": r.model or f"regex {r.model_regex}", "provider": r.provider, "fallbacks": list(r.fallbacks),
              "priority": r.priority} for _i, r in order]
    return {"rules": rules, "default_provider": cfg.default_provider,
            "markers": [f"[LUNAROUTE:{name}]" for name in cfg.providers] + ["[LUNAROUTE:clear]"],
            "bypass": {"enabled": cfg.bypass.enabled, "provider": cfg.bypass_provider}}


def first_choice(cfg: Config, reason: str | None, model: str | None) -> str | None:
    """The provider a rule or the default would have tried first for `model`; None for markers and
    preferences (explicit choices) or when nothing says."""
    if reason == "default":
        return cfg.default_provider
    if reason != "rule" or not model:
        return None
    for _i, rule in sorted(enumerate(cfg.routing.rules), key=lambda item: (-item[1].priority, item[0])):
        if rule.model is not None and fnmatchcase(model, rule.model):
            return rule.provider
        if rule.model_regex is not None and re.fullmatch(rule.model_regex, model):
            return rule.provider
    return None


def route_label(cfg: Config, reason: str | None, model: str | None, provider: str | None) -> str:
    """How a record's provider was chosen, as the console says it: `marker`, `rule`, `default`,
    `preferences`, or `rule, fallback from anthropic` when a later provider of the chain answered
    (records name the provider that answered; the config says which one was first)."""
    first = first_choice(cfg, reason, model)
    if first is not None and provider and provider != first:
        return f"{reason}, fallback from {first}"
    return reason or "—"
