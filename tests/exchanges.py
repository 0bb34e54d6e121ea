"""Exchange-level snapshots: a scenario (config, the client's request, each attempt's provider answer)
runs through the request phase and its fallback attempts, as Envoy would drive them, and comes out as
what a reviewer checks — the replies each phase gave, the metric deltas, the budget counters, the
record. `tests/fixtures/exchanges/<name>.json` holds the expected outcome; `LUNAROUTE_UPDATE_GOLDENS=1`
rewrites it (read the diff before committing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import REGISTRY

from extproc import config
from extproc.actions import Reply
from extproc.attempts import AttemptExchange
from extproc.exchange import Exchange
from extproc.gateway import Gateway

GOLDENS = Path(__file__).parent / "fixtures" / "exchanges"
# Timings vary run to run: histograms are compared by how many observations they got, not their values.
_SKIPPED = ("lunaroute_extproc_phase_seconds",)


def metric_samples() -> dict[str, float]:
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        if family.name in _SKIPPED or not family.name.startswith(("lunaroute_", "gen_ai_")):
            continue
        for s in family.samples:
            if family.type == "histogram" and not s.name.endswith("_count"):
                continue
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 8) for k, v in sorted(after.items())
            if round(v - before.get(k, 0.0), 8)}


def summary(reply: Reply) -> dict[str, Any]:
    """What a reply does, minus what varies (JSON bodies parsed, the chain header decoded)."""
    out: dict[str, Any] = {}
    if reply.immediate is not None:
        body = reply.immediate.body
        return {"immediate": reply.immediate.status, "body": orjson.loads(body) if body else None,
                "headers": {k: v for k, v in reply.immediate.headers.items() if k != "retry-after"}}
    if reply.set_headers:
        out["set"] = {k: (orjson.loads(v) if k == "x-lunaroute-chain" else v)
                      for k, v in sorted(reply.set_headers.items())}
    if reply.remove_headers:
        out["remove"] = sorted(set(reply.remove_headers))
    if reply.body:
        try:
            out["body"] = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            out["body"] = reply.body.decode()
    for mode in ("request_body_mode", "response_header_mode", "response_body_mode"):
        if getattr(reply, mode):
            out[mode] = getattr(reply, mode)
    return out


def run(scenario: dict[str, Any], gw: Gateway | None = None) -> dict[str, Any]:
    """Drive one scenario; return its outcome (see the module docstring)."""
    cfg = config.parse(scenario["config"], env={"K": "k"})
    gw = gw or Gateway(cfg)
    before = metric_samples()
    phases: list[dict[str, Any]] = []
    ex = Exchange(gw, sealed=True)
    phases.append({"request_headers": summary(ex.on_request_headers(scenario["headers"], False))})
    body = orjson.dumps(scenario["body"])
    reply = ex.on_request_body(body)
    phases.append({"request_body": summary(reply)})
    sent = reply.body or body
    final: dict[str, Any] | None = None
    for number, attempt in enumerate(scenario.get("attempts", ()), start=1):
        att = AttemptExchange(gw, attempt["provider"])
        headers = {**scenario["headers"], **reply.set_headers, "x-envoy-attempt-count": str(number)}
        got = {"provider": attempt["provider"], "request_headers": summary(att.on_request_headers(headers, False))}
        if att.budget_check is not None:  # what the servicer asks the store, off the event loop
            assert gw.budgets is not None
            refusal = gw.budgets.check(*att.budget_check)
            if refusal is not None:
                refused = att.over_budget(refusal)
                assert refused.immediate is not None
                got["refused"] = summary(refused)
                phases.append({"attempt": got})
                final = {"headers": {":status": "429", "content-type": "application/json",
                                     "x-lunaroute-provider": attempt["provider"]}, "body": refused.immediate.body}
                continue
        got["request_body"] = summary(att.on_request_body(sent))
        got["response_headers"] = summary(att.on_response_headers(attempt["response_headers"]))
        answer = orjson.dumps(attempt["response_body"])
        out = att.on_response_body(answer, True)
        got["response_body"] = summary(out)
        phases.append({"attempt": got})
        final = {"headers": {**attempt["response_headers"], "x-lunaroute-provider": attempt["provider"]},
                 "body": out.body or answer}
    if final is None and "response_headers" in scenario:
        final = {"headers": scenario["response_headers"], "body": orjson.dumps(scenario["response_body"])}
    if final is not None:
        phases.append({"response_headers": summary(ex.on_response_headers(final["headers"]))})
        phases.append({"response_body": summary(ex.on_response_body(final["body"], True))})
    ex.close()
    if gw.budgets is not None:
        gw.budgets.flush()
    outcome: dict[str, Any] = {"phases": phases, "metrics": deltas(before, metric_samples())}
    if gw.budgets is not None:
        store = gw.budgets.store
        assert store is not None
        outcome["budget_counters"] = {
            d.key.rsplit(":", 1)[0]: round(store.used(d.key), 6)
            for lim in gw.budgets.limits for name in cfg.providers
            for d in gw.budgets.draws(scenario.get("key"), name, None) if d.limit is lim}
    return outcome


def check(name: str, outcome: dict[str, Any]) -> None:
    """Compare with the golden `name`, or write it when asked to."""
    path = GOLDENS / f"{name}.json"
    text = orjson.dumps(outcome, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    if os.environ.get("LUNAROUTE_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path}; write it with LUNAROUTE_UPDATE_GOLDENS=1 and read it"
    assert orjson.loads(path.read_text()) == orjson.loads(text), f"{name}: the outcome differs from {path}"
