"""Rate limits through the real Envoy: requests per minute per gateway key (one key, and "*": each key
on its own) and per provider, counted by Envoy, with exact 429 counts, `retry-after` and
`x-ratelimit-*` headers, and bodies in the client's dialect; tokens per minute charged after the
response and refused by Envoy, shared by two gateways on one real Redis, failing open without it."""

from __future__ import annotations

import json
import time

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


def _fresh_minute(margin_s: float = 20.0) -> None:
    """Token windows are UTC minutes: start where this one has room for the whole test."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.1)


def _until_refused(call) -> tuple[int, dict[str, str], bytes]:  # noqa: ANN001 - a request
    """Charged after the response: Envoy refuses once the workers have told it (about a second)."""
    for _ in range(100):
        result = call()
        if result[0] == 429:
            return result
        time.sleep(0.1)
    raise AssertionError("never refused")


def _tpm_config(anthropic_mock, openai_mock, store: str) -> dict:  # noqa: ANN001 - the mocks
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["access"] = {"keys": [{"name": n, "key_env": f"LR_TEST_{n.upper()}"} for n in ("alice", "bob")]}
    cfg["budgets"] = {"store": store}
    cfg["rate_limits"] = [{"key": "alice", "tpm": 60}]  # two Anthropic mock answers: 2 × (26 + 7) = 66
    return cfg


TPM_ENV = {"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_TEST_ALICE": ALICE, "LR_TEST_BOB": BOB}


def test_a_keys_tpm_window_fills_after_the_response_and_envoy_refuses_the_key(tmp_path, anthropic_mock,
                                                                              openai_mock) -> None:
    gw = Gateway(tmp_path, _tpm_config(anthropic_mock, openai_mock, str(tmp_path / "store.sqlite")), workers=2)
    gw.start(env=TPM_ENV)
    try:
        _fresh_minute()
        assert gw.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] == 200  # 33 of 60
        assert gw.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] == 200  # admitted: 66 after it
        served = len(anthropic_mock.requests)
        status, headers, body = _until_refused(lambda: gw.get("/v1/messages", "POST", _headers(ALICE), MESSAGE))
        overrun = len(anthropic_mock.requests) - served  # admitted before Envoy knew (the documented bound)
        assert headers["x-ratelimit-limit"] == "60" and headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-reset"] == headers["retry-after"]
        error = json.loads(body)
        assert error["error"]["type"] == "rate_limit_error"
        assert "60 tokens per minute (key=alice)" in error["error"]["message"]
        # the whole key is refused, by Envoy: a request for the workers (a marker) never reaches one
        python_before = gw.log().count("INFO lunaroute: route ")
        marked = b'{"model":"gpt-mock","messages":[{"role":"user","content":"[LUNAROUTE:gpt] hi"}]}'
        chat = {"content-type": "application/json", "authorization": f"Bearer {ALICE}"}
        status, _, body = gw.get("/v1/chat/completions", "POST", chat, marked)
        assert status == 429 and json.loads(body)["error"]["type"] in ("rate_limit_error", "rate_limit_exceeded")
        assert gw.log().count("INFO lunaroute: route ") == python_before
        assert len(anthropic_mock.requests) == served + overrun
        # bob has no limit
        assert gw.get("/v1/messages", "POST", _headers(BOB), MESSAGE)[0] == 200
    finally:
        gw.stop()


def test_two_gateways_on_one_redis_share_a_tpm_window_and_fail_open_without_it(tmp_path, anthropic_mock,
                                                                               openai_mock, redis_server) -> None:
    cfg = _tpm_config(anthropic_mock, openai_mock, redis_server.url)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Gateway(tmp_path / "a", cfg, workers=1), Gateway(tmp_path / "b", cfg, workers=1)
    first.start(env=TPM_ENV)
    try:
        second.start(env=TPM_ENV)
        _fresh_minute()
        for _ in range(2):  # the window fills through the first gateway only
            assert first.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] == 200
        status, headers, _ = _until_refused(lambda: second.get("/v1/messages", "POST", _headers(ALICE), MESSAGE))
        assert headers["x-ratelimit-limit"] == "60"
        # Redis stops: the limits fail open (counted and logged), requests go on
        redis_server.stop()
        for _ in range(100):
            if second.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] == 200:
                break
            time.sleep(0.1)
        assert second.get("/v1/messages", "POST", _headers(ALICE), MESSAGE)[0] == 200
        text = second.get("/metrics")[2].decode()
        errors = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("lunaroute_rate_limit_store_errors_total{"))
        assert errors >= 1
        assert "limits fail open" in second.log()
    finally:
        second.stop()
        first.stop()
