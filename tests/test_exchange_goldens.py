"""The request phase and its fallback attempts together, as Envoy drives them: what each phase
answers, and what the ledger settles — each request counted once, under the provider that answered.
Outcomes are snapshots in tests/fixtures/exchanges/ (see tests/exchanges.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc import config
from extproc.gateway import Gateway
from extproc.observe.labels import MAX_DYNAMIC, OTHER, ModelLabels

from .exchanges import check, run

MESSAGES = {":method": "POST", ":path": "/v1/messages", "x-api-key": "sk-ant-user",
            "anthropic-version": "2023-06-01", "content-type": "application/json"}
ASK = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
OPENAI_JSON = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-5.1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
ANTHROPIC_JSON = {"id": "m1", "type": "message", "role": "assistant", "model": "claude-x",
                  "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 10, "output_tokens": 3}}
JSON = {":status": "200", "content-type": "application/json"}
FAILOVER = [{"provider": "anthropic", "response_headers": {":status": "529", "content-type": "application/json"},
             "response_body": OVERLOADED},
            {"provider": "gpt", "response_headers": JSON, "response_body": OPENAI_JSON}]


def _config(tmp_path: Path, **extra: object) -> dict:
    return {
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
            "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
        },
        "routing": {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]},
        "recording": {"enabled": False, "dir": str(tmp_path / "rec")},
        **extra,
    }


def _budgets(tmp_path: Path) -> dict:
    return {"store": str(tmp_path / "budgets.sqlite"), "limits": [
        {"name": "claude-day", "provider": "anthropic", "tokens": 50000},
        {"name": "gpt-day", "provider": "gpt", "tokens": 50000}]}


def test_a_chain_metered_for_a_budget_is_counted_once_under_the_provider_that_answered(tmp_path: Path) -> None:
    """The reproduced bug: tokens counted for gpt and anthropic both, cost priced with anthropic's model,
    the budget charged to anthropic. Now: gpt's tokens once, gpt's model, gpt's counter."""
    outcome = run({"config": _config(tmp_path, budgets=_budgets(tmp_path)), "headers": MESSAGES, "body": ASK,
                   "attempts": FAILOVER})
    m = outcome["metrics"]
    assert m["lunaroute_tokens_total{direction=output,provider=gpt}"] == 3
    assert not any("provider=anthropic" in k and "tokens" in k for k in m)
    assert outcome["budget_counters"]["lunaroute:budget:gpt-day:provider=gpt"] > 0
    assert outcome["budget_counters"]["lunaroute:budget:claude-day:provider=anthropic"] == 0
    check("chain_metered_by_budget", outcome)


def test_a_recorded_chain_counts_its_tokens_once(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg["recording"]["enabled"] = True
    gw = Gateway(config.parse(cfg, env={"K": "k"}))
    try:
        outcome = run({"config": cfg, "headers": MESSAGES, "body": ASK, "attempts": FAILOVER}, gw)
    finally:
        gw.close()
    assert outcome["metrics"]["lunaroute_tokens_total{direction=output,provider=gpt}"] == 3
    check("chain_recorded", outcome)


def test_an_unmetered_chain_is_settled_by_the_attempt_that_read_the_answer(tmp_path: Path) -> None:
    outcome = run({"config": _config(tmp_path), "headers": MESSAGES, "body": ASK, "attempts": FAILOVER})
    assert outcome["metrics"]["lunaroute_tokens_total{direction=output,provider=gpt}"] == 3
    check("chain_unmetered", outcome)


def test_a_fallback_provider_whose_budget_is_spent_refuses_its_attempt(tmp_path: Path) -> None:
    cfg = _config(tmp_path, budgets=_budgets(tmp_path))
    gw = Gateway(config.parse(cfg, env={"K": "k"}))
    assert gw.budgets is not None and gw.budgets.store is not None
    (spent,) = gw.budgets.draws(None, "gpt", None)
    gw.budgets.store.add([(spent.key, 50000, 3600)])
    outcome = run({"config": cfg, "headers": MESSAGES, "body": ASK, "attempts": FAILOVER}, gw)
    refused = outcome["phases"][3]["attempt"]["refused"]
    assert refused["immediate"] == 429 and "gpt-day" in refused["body"]["error"]["message"]
    assert outcome["budget_counters"]["lunaroute:budget:gpt-day:provider=gpt"] == 50000  # nothing more
    check("chain_fallback_spent", outcome)


def test_a_single_provider_passthrough_under_a_budget(tmp_path: Path) -> None:
    outcome = run({"config": _config(tmp_path, budgets=_budgets(tmp_path)), "headers": MESSAGES,
                   "body": {**ASK, "model": "claude-other"}, "response_headers": JSON,
                   "response_body": ANTHROPIC_JSON})
    assert outcome["budget_counters"]["lunaroute:budget:claude-day:provider=anthropic"] == 13
    check("single_budgeted", outcome)


def test_a_marker_translated_request_is_priced_with_the_model_the_provider_got(tmp_path: Path) -> None:
    ask = {**ASK, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}
    outcome = run({"config": _config(tmp_path), "headers": MESSAGES, "body": ask, "response_headers": JSON,
                   "response_body": OPENAI_JSON})
    assert outcome["metrics"]["lunaroute_cost_usd_total{model=gpt-5.1,provider=gpt}"] > 0
    check("marker_translated", outcome)


def test_made_up_model_names_share_one_label(tmp_path: Path) -> None:
    hostile = "claude-" + "x" * 5000
    ask = {**ASK, "model": hostile, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}
    outcome = run({"config": _config(tmp_path), "headers": MESSAGES, "body": ask, "response_headers": JSON,
                   "response_body": OPENAI_JSON})
    assert not any(hostile in k for k in outcome["metrics"])
    check("hostile_model_name", outcome)


def test_model_labels_are_the_configured_models_and_a_bounded_few_that_match_a_glob() -> None:
    labels = ModelLabels(["gpt-5.1"], ["claude-*"])
    assert labels.label("gpt-5.1") == "gpt-5.1"
    assert labels.label("claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert labels.label("made-up") == OTHER
    assert labels.label("claude-" + "x" * 100) == OTHER  # too long for a label
    assert labels.label("claude-[/x]\x1b]0;t") == OTHER  # not a model name
    names = [labels.label(f"claude-{i}") for i in range(MAX_DYNAMIC + 10)]
    assert names.count(OTHER) == 11  # claude-sonnet-4-5 took one of the dynamic places


@pytest.mark.parametrize(("method", "path", "status"), [
    ("DELETE", "/v1/models/ft:gpt-4o-mini:org:x", 405), ("POST", "/v1/models/x/anything", 404),
    ("GET", "/v1/models/x/anything", 404)])
def test_the_models_api_only_reads_one_model_or_the_list(tmp_path: Path, method: str, path: str, status: int) -> None:
    cfg = config.parse(_config(tmp_path, default_provider="gpt"), env={"K": "k"})
    from extproc.exchange import Exchange

    ex = Exchange(Gateway(cfg), sealed=True)
    reply = ex.on_request_headers({":method": method, ":path": path, "authorization": "Bearer x"}, True)
    assert reply.immediate is not None and reply.immediate.status == status


def test_an_unmetered_api_is_refused_to_a_budgeted_key(tmp_path: Path) -> None:
    budgets = {"store": str(tmp_path / "b.sqlite"), "limits": [{"name": "alice-day", "key": "alice", "usd": 5}]}
    outcome = run({"config": _config(tmp_path, budgets=budgets), "key": "alice",
                   "headers": {**MESSAGES, ":path": "/v1/messages/batches", "x-lunaroute-client": "alice"},
                   "body": {"requests": []}})
    reply = outcome["phases"][0]["request_headers"]
    assert reply["immediate"] == 403 and "budget" in reply["body"]["error"]["message"]
    check("batches_refused_under_budget", outcome)


def test_the_reservation_covers_the_output_the_request_may_ask_for(tmp_path: Path) -> None:
    from extproc.exchange import Exchange

    gw = Gateway(config.parse(_config(tmp_path, budgets=_budgets(tmp_path)), env={"K": "k"}))
    import orjson

    ex = Exchange(gw, sealed=True)
    ex.on_request_headers(MESSAGES, False)
    ex.on_request_body(orjson.dumps({**ASK, "model": "claude-other", "max_tokens": 64000}))
    assert ex.reservation is not None and ex.reservation.tokens >= 64000
    assert gw.budgets is not None
    assert gw.budgets.reserve(ex.reservation) is None  # nothing spent yet: the first may run
    second = Exchange(gw, sealed=True)
    second.on_request_headers(MESSAGES, False)
    second.on_request_body(orjson.dumps({**ASK, "model": "claude-other", "max_tokens": 64000}))
    assert second.reservation is not None
    assert gw.budgets.reserve(second.reservation) is not None  # the first one's output may take it all


def test_a_body_naming_its_model_twice_is_refused(tmp_path: Path) -> None:
    from extproc.exchange import Exchange

    ex = Exchange(Gateway(config.parse(_config(tmp_path), env={"K": "k"})), sealed=True)
    ex.on_request_headers(MESSAGES, False)
    raw = b'{"model": "claude-opus-4", "max_tokens": 5, "messages": [], "model": "claude-x"}'
    reply = ex.on_request_body(raw)
    assert reply.immediate is not None and reply.immediate.status == 400
    assert b"'model' more than once" in reply.immediate.body
