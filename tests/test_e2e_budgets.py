"""Budgets through the real Envoy: usage of an untranslated stream is counted on the way past, and a
spent budget is a 429 in the client's dialect."""

from __future__ import annotations

import anthropic
import pytest

from tests.conftest import Gateway, standard_config

pytestmark = pytest.mark.e2e


def test_a_spent_budget_answers_429_after_the_stream_that_spent_it(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["budgets"] = {"store": str(tmp_path / "budgets.sqlite"), "daily_tokens": {"anthropic": 30}}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    try:
        client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0)
        with client.messages.stream(model="claude-x", max_tokens=5,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert "".join(stream.text_stream) == "Hello from mock Anthropic"  # untouched passthrough
        with pytest.raises(anthropic.RateLimitError) as err:  # 21 + 5 cached + 7 output > 30
            client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert "daily token budget of provider 'anthropic' is spent (33 of 30 tokens)" in str(err.value)
        assert len(anthropic_mock.requests) == 1
    finally:
        gw.stop()
