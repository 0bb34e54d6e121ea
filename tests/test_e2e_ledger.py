"""The ledger through the real Envoy: a fallback chain that a budget and a record both read is counted
once, under the provider that answered, and made-up model names cannot grow `/metrics`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} ([0-9.e+-]+)$', re.M)


@pytest.fixture(scope="module")
def metered_chain(tmp_path_factory: pytest.TempPathFactory, anthropic_mock, openai_mock) -> Iterator[Gateway]:
    """Claude models go to Anthropic and fall back to gpt; a budget on each, and recording on."""
    work = tmp_path_factory.mktemp("ledger")
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    config["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    config["budgets"] = {"store": str(work / "budgets.sqlite"), "limits": [
        {"name": "claude-day", "provider": "anthropic", "tokens": 10_000_000},
        {"name": "gpt-day", "provider": "gpt", "tokens": 10_000_000}]}
    config["recording"] = {"enabled": True, "dir": str(work / "sessions")}
    gw = Gateway(work, config, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


def _metrics(gw: Gateway) -> dict[tuple[str, frozenset[str]], float]:
    status, _, body = gw.get("/metrics")
    assert status == 200
    return {(name, frozenset(labels.split(","))): float(value)
            for name, labels, value in _SAMPLE.findall(body.decode())}


def _value(samples: dict, name: str, **labels: str) -> float:
    want = {f'{k}="{v}"' for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_a_fallback_is_counted_once_under_the_provider_that_answered(metered_chain: Gateway, anthropic_mock,
                                                                     openai_mock) -> None:
    before = _metrics(metered_chain)
    anthropic_mock.fail_next(529, OVERLOADED)
    client = anthropic.Anthropic(base_url=metered_chain.url, api_key="sk-ant-user", max_retries=0)
    msg = client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock OpenAI"
    after = _metrics(metered_chain)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("lunaroute_tokens_total", provider="gpt", direction="output") == msg.usage.output_tokens
    assert delta("lunaroute_tokens_total", provider="anthropic", direction="output") == 0
    assert delta("lunaroute_responses_total", provider="anthropic", status="529") == 1
    assert delta("lunaroute_responses_total", provider="gpt", status="200") == 1
    assert delta("lunaroute_cost_usd_total", provider="anthropic") == 0
    assert delta("gen_ai_client_token_usage_count", gen_ai_provider_name="gpt", gen_ai_token_type="output",
                 gen_ai_request_model="gpt-mock") == 1


def test_made_up_model_names_do_not_grow_the_metrics(metered_chain: Gateway, openai_mock) -> None:
    client = anthropic.Anthropic(base_url=metered_chain.url, api_key="sk-ant-user", max_retries=0)
    for i in range(3):
        name = f"invented-{i}-" + "x" * 200_000
        client.messages.create(model=name, max_tokens=10,
                               messages=[{"role": "user", "content": "[LUNAROUTE:gpt] hi"}])
    status, _, body = metered_chain.get("/metrics")
    assert status == 200
    assert b"invented-" not in body and b"xxxxxxxxxx" not in body
    assert len(body) < 256 * 1024, f"/metrics is {len(body)} bytes"


def test_records_name_the_provider_that_answered(metered_chain: Gateway, anthropic_mock) -> None:
    anthropic_mock.fail_next(529, OVERLOADED)
    client = anthropic.Anthropic(base_url=metered_chain.url, api_key="sk-ant-user", max_retries=0)
    client.messages.create(model="claude-record-me", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    import sqlite3
    import time

    db_path = Path(metered_chain.config["recording"]["dir"]) / "sessions.sqlite"
    for _ in range(100):  # the writer thread stores it after the response: wait for it, bounded
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                rows = db.execute("SELECT provider, sent_model FROM records WHERE model = 'claude-record-me'"
                                  ).fetchall()
            if rows:
                assert rows == [("gpt", "gpt-mock")]
                return
        time.sleep(0.1)
    raise AssertionError("the record never arrived")
