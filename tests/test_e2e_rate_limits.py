"""Rate limits through the real Envoy: requests per minute per gateway key (one key, and "*": each key
on its own) and per provider, counted by Envoy, with exact 429 counts, `retry-after` and
`x-ratelimit-*` headers, and bodies in the client's dialect."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

ALICE = "lr-test-rate-alice-0123456789abcdef"
BOB = "lr-test-rate-bob-0123456789abcdefgh"
CAROL = "lr-test-rate-carol-0123456789abcdef"
MESSAGE = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
CHAT = b'{"model":"gpt-mock","messages":[{"role":"user","content":"hi"}]}'


def _headers(key: str) -> dict[str, str]:
    return {"content-type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory, anthropic_mock, openai_mock):
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["access"] = {"keys": [{"name": n, "key_env": f"LR_TEST_{n.upper()}"} for n in ("alice", "bob", "carol")]}
    cfg["routing"] = {"rules": [{"model": "gpt-*", "provider": "gpt"}]}
    cfg["rate_limits"] = [{"key": "alice", "rpm": 3}, {"key": "*", "rpm": 5}, {"provider": "gpt", "rpm": 2}]
    gw = Gateway(tmp_path_factory.mktemp("limited"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_TEST_ALICE": ALICE, "LR_TEST_BOB": BOB,
                  "LR_TEST_CAROL": CAROL})
    yield gw
    gw.stop()


def test_a_keys_rpm_and_every_keys_own_bucket(limited, anthropic_mock) -> None:
    before = len(anthropic_mock.requests)
    statuses = [limited.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # alice's own 3 (under "*"'s 5)
    status, headers, body = limited.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit"] == "3" and headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= 1
    error = json.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert "rate limit" in error["error"]["message"]
    # bob has his own bucket of 5 ("*": each key on its own), whatever alice did
    assert [limited.get("/v1/messages", "POST", _headers(BOB), MESSAGE)[0] for _ in range(6)] == [200] * 5 + [429]
    assert len(anthropic_mock.requests) == before + 3 + 5  # refusals never reached the provider


def test_a_providers_rpm_counts_both_paths_in_the_clients_dialect(limited, openai_mock) -> None:
    before = len(openai_mock.requests)
    headers = {"content-type": "application/json", "authorization": f"Bearer {CAROL}"}
    fast = limited.get("/v1/chat/completions", "POST", headers, CHAT)  # the fast path to gpt
    python = limited.get("/v1/chat/completions", "POST", headers,  # a marker: the workers route it to gpt
                         b'{"model":"gpt-mock","messages":[{"role":"user","content":"[LUNAROUTE:gpt] hi"}]}')
    results = [fast, python, limited.get("/v1/chat/completions", "POST", headers, CHAT)]
    assert [r[0] for r in results] == [200, 200, 429]
    error = json.loads(results[2][2])
    assert error["error"]["type"] in ("rate_limit_error", "rate_limit_exceeded") and "rate limit" in error["error"][
        "message"]
    assert int(results[2][1]["retry-after"]) >= 1 and "x-ratelimit-limit" in results[2][1]
    assert len(openai_mock.requests) == before + 2
