"""Credential pools end to end: the real gateway (Envoy + workers) in front of a mock Anthropic with
per-key quotas. Three keys, weights 2:1:1; the third lives in a file (revocation, rotation)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from extproc.envoy_config.pools import POOLS_FILE
from extproc.pools.pick import start_key
from tests.conftest import Gateway, RedisServer
from tests.mock_providers import MockAnthropic
from tests.test_claude_code import claude as claude  # noqa: PLC0414 - the CLI's fixture, used by name
from tests.test_claude_code import run_claude

pytestmark = pytest.mark.e2e

KEYS = {"a": "sk-ant-pool-key-aaaa-0001", "b": "sk-ant-pool-key-bbbb-0002", "c": "sk-ant-pool-key-cccc-0003"}
WEIGHTS = [("a", 2), ("b", 1), ("c", 1)]
ENV = {"LR_POOL_A": KEYS["a"], "LR_POOL_B": KEYS["b"]}


def pool_config(mock_url: str, key_file: Path, **extra: object) -> dict:
    return {
        "default_provider": "claude",
        "providers": {"claude": {"type": "anthropic", "base_url": mock_url, "keys": [
            {"name": "a", "api_key_env": "LR_POOL_A", "weight": 2},
            {"name": "b", "api_key_env": "LR_POOL_B"},
            {"name": "c", "api_key_file": str(key_file)}]}},
        "bypass": {"enabled": False},
        **extra,
    }


@pytest.fixture(scope="module")
def pool_mock() -> Iterator[MockAnthropic]:
    mock = MockAnthropic().start()
    yield mock
    mock.stop()


@pytest.fixture
def pooled(tmp_path: Path, pool_mock: MockAnthropic) -> Iterator[Gateway]:
    """A fresh gateway per test: cooldowns live in its store (a SQLite file of the test's own)."""
    pool_mock.reset()
    key_file = tmp_path / "key-c"
    key_file.write_text(KEYS["c"])
    (tmp_path / "state").mkdir()
    cfg = pool_config(pool_mock.base_url, key_file, budgets={"store": str(tmp_path / "store.sqlite")},
                      pools={"state_dir": str(tmp_path / "state")})
    gw = Gateway(tmp_path, cfg, workers=2).start(env=ENV)
    yield gw
    gw.stop()


def key_name(value: str) -> str:
    return next(n for n, k in KEYS.items() if k == value)


def session_on(key: str, *, avoid: tuple[str, ...] = ()) -> str:
    """A session id whose conversation starts on `key` (among the keys not in `avoid`)."""
    usable = [(n, w) for n, w in WEIGHTS if n not in avoid]
    for i in range(1000):
        sid = str(uuid.UUID(int=i + 1))
        if start_key(usable, sid) == key:
            return sid
    raise AssertionError("no session found")


def message(gw: Gateway, session: str | None, *, python: bool = False, text: str = "hi",
            stream: bool = False) -> tuple[int, dict[str, str], bytes]:
    body: dict = {"model": "claude-mock", "max_tokens": 16, "stream": stream,
                  "messages": [{"role": "user", "content": text}]}
    if python:  # a body fast.lua leaves to Python (it holds the word "provider")
        body["metadata"] = {"note": "provider"}
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if session:
        headers["x-claude-code-session-id"] = session
    return gw.get("/v1/messages", "POST", headers, json.dumps(body).encode())


def served_keys(mock: MockAnthropic) -> list[str]:
    return [key_name(k) for k in mock.quotas.served]


@pytest.mark.parametrize("python", [False, True], ids=["fast_path", "python_path"])
def test_a_429_is_absorbed_by_the_next_key(pooled: Gateway, pool_mock: MockAnthropic, python: bool) -> None:
    sid = session_on("a")
    pool_mock.quotas.limit({KEYS["a"]: 0})  # key a is out from the start
    status, headers, body = message(pooled, sid, python=python)
    assert status == 200, body
    assert json.loads(body)["type"] == "message"
    assert [(key_name(k), s) for k, s in pool_mock.quotas.refused] == [("a", 429)]
    assert served_keys(pool_mock) == ["b"]  # the next key in ring order from a
    assert headers["x-lunaroute-pool-key"] == "b"
    # the provider saw each key once, and never the client's own credentials
    assert [r.headers["x-api-key"] for r in pool_mock.requests] == [KEYS["a"], KEYS["b"]]
    assert went_through_python(pooled) == python


def went_through_python(gw: Gateway) -> bool:
    return "route POST /v1/messages" in gw.log()


def test_a_revoked_key_is_skipped_until_its_file_changes(pooled: Gateway, pool_mock: MockAnthropic,
                                                         tmp_path: Path) -> None:
    sid = session_on("c")
    pool_mock.quotas.revoked.add(KEYS["c"])
    status, headers, _ = message(pooled, sid)
    assert status == 200 and headers["x-lunaroute-pool-key"] == "a"  # c answered 401; the ring goes on to a
    wait_for(lambda: out_keys(pooled) == {"c"})
    for _ in range(5):
        assert message(pooled, sid)[0] == 200
    assert "c" not in served_keys(pool_mock) and pool_mock.quotas.refused == [(KEYS["c"], 401)]
    # rotation: a new key, written atomically; Envoy re-reads it and the pool takes the key back
    rotated = "sk-ant-pool-key-cccc-rotated"
    new = tmp_path / "key-c.new"
    new.write_text(rotated)
    new.replace(tmp_path / "key-c")
    wait_for(lambda: out_keys(pooled) == set())
    wait_for(lambda: message(pooled, sid)[1].get("x-lunaroute-pool-key") == "c")
    assert pool_mock.requests[-1].headers["x-api-key"] == rotated


def out_keys(gw: Gateway) -> set[str]:
    """The keys the pool file tells Envoy are out."""
    doc = yaml.safe_load((Path(gw.config["pools"]["state_dir"]) / POOLS_FILE).read_text())
    code = doc["resources"][0]["typed_config"]["default_source_code"]["inline_string"]
    return set(re.findall(r'\["([a-z0-9_-]+)"\] = \d', code.split('["out"] = ')[1].split("}")[0]))


def workers_see_out(gw: Gateway) -> set[str]:
    """The keys every worker counts as out (/metrics: the lowest value over the workers)."""
    text = gw.get("/metrics")[2].decode()
    return set(re.findall(r'lunaroute_pool_key_out\{key="([^"]+)",provider="claude"\} 1\.0', text))


def wait_for(condition, attempts: int = 100) -> None:
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition never held")


SESSIONS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"pool-session-{i}")) for i in range(30)]


def run_sessions(gw: Gateway, turns: range) -> dict[str, list[tuple[int, str]]]:
    """30 Claude Code-like sessions at once, each taking `turns` one after another (streamed, with
    its session header); per session: (status, key that answered) per turn."""
    def one(sid: str) -> list[tuple[int, str]]:
        out = []
        for turn in turns:
            status, headers, body = message(gw, sid, text=f"turn {turn} of {sid}", stream=True)
            out.append((status, headers.get("x-lunaroute-pool-key", "")))
        return out

    with ThreadPoolExecutor(len(SESSIONS)) as pool:
        return dict(zip(SESSIONS, pool.map(one, SESSIONS), strict=True))


def test_thirty_sessions_stay_on_their_keys_and_move_only_when_theirs_is_exhausted(
        pooled: Gateway, pool_mock: MockAnthropic) -> None:
    first = run_sessions(pooled, range(5))
    assert all(status == 200 for turns in first.values() for status, _ in turns)
    home = {}
    for sid, turns in first.items():
        keys = Counter(key for _, key in turns)
        home[sid], count = keys.most_common(1)[0]
        assert count / len(turns) >= 0.95  # sticky while no key cools
        assert home[sid] == start_key(WEIGHTS, sid)  # the pick Python and Envoy share
    share = Counter(home.values())
    for name, weight in WEIGHTS:  # 30 sessions: the share by weight, within 15 points
        assert abs(share[name] / len(SESSIONS) - weight / 4) <= 0.15
    assert not went_through_python(pooled)  # every turn took the fast path

    pool_mock.quotas.limit({KEYS["a"]: pool_mock.quotas.used[KEYS["a"]]})  # key a is spent from now on
    second = run_sessions(pooled, range(5, 10))
    assert all(status == 200 for turns in second.values() for status, _ in turns)  # no client saw an error
    for sid, turns in second.items():
        keys = {key for _, key in turns}
        if home[sid] == "a":
            assert "a" not in keys  # moved
        else:
            assert keys == {home[sid]}  # untouched
    # the cooldown reached Envoy: key a is out, and no turn starts on it any more
    wait_for(lambda: out_keys(pooled) == {"a"})
    moved = next(sid for sid in SESSIONS if home[sid] == "a")

    def starts_elsewhere() -> bool:
        refused = len(pool_mock.quotas.refused)
        return message(pooled, moved)[0] == 200 and len(pool_mock.quotas.refused) == refused

    wait_for(starts_elsewhere)  # Envoy reloads the pool file on its own time
    refused = len(pool_mock.quotas.refused)
    run_sessions(pooled, range(10, 11))
    assert len(pool_mock.quotas.refused) == refused


def test_every_key_out_is_a_429_in_the_clients_dialect_with_the_soonest_retry_after(
        pooled: Gateway, pool_mock: MockAnthropic) -> None:
    pool_mock.quotas.limit({KEYS["a"]: 0, KEYS["b"]: 0, KEYS["c"]: 0}, retry_after=40)
    status, headers, body = message(pooled, session_on("b"))
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    assert len(pool_mock.quotas.refused) == 3  # each key tried once, within the one request
    wait_for(lambda: out_keys(pooled) == {"a", "b", "c"} and workers_see_out(pooled) == {"a", "b", "c"})
    refused = len(pool_mock.quotas.refused)
    status, headers, body = message(pooled, session_on("b"))  # now the gateway answers itself
    assert status == 429 and json.loads(body)["type"] == "error"
    assert 30 <= int(headers["retry-after"]) <= 40
    chat = {"model": "claude-mock", "messages": [{"role": "user", "content": "hi"}]}
    status, headers, body = pooled.get("/v1/chat/completions", "POST", {"content-type": "application/json"},
                                       json.dumps(chat).encode())
    assert status == 429 and "error" in json.loads(body) and "type" not in json.loads(body)
    assert 30 <= int(headers["retry-after"]) <= 40
    assert len(pool_mock.quotas.refused) == refused  # nothing more reached the provider


@pytest.mark.parametrize("python", [False, True], ids=["fast_path", "python_path"])
def test_upstream_rate_limit_headers_reach_the_client(pooled: Gateway, pool_mock: MockAnthropic,
                                                      python: bool) -> None:
    pool_mock.quotas.limit({KEYS["a"]: 50, KEYS["b"]: 50, KEYS["c"]: 50})
    status, headers, _ = message(pooled, session_on("a"), python=python)
    assert status == 200
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert "anthropic-ratelimit-requests-reset" in headers
    assert went_through_python(pooled) == python


def test_per_key_state_in_metrics_and_lunaroute_pools_and_key_values_never_leave_envoy(
        pooled: Gateway, pool_mock: MockAnthropic) -> None:
    pool_mock.quotas.limit({KEYS["a"]: 0, KEYS["b"]: 100})
    assert message(pooled, session_on("a"))[0] == 200
    assert message(pooled, session_on("a"), python=True)[0] == 200
    wait_for(lambda: out_keys(pooled) == {"a"})
    wait_for(lambda: 'lunaroute_pool_key_requests{key="b",provider="claude"} 2.0'
             in pooled.get("/metrics")[2].decode())  # Envoy's count of key b's requests, fast path included
    metrics = pooled.get("/metrics")[2].decode()
    assert 'lunaroute_pool_refusals_total{key="a",provider="claude",status="429"}' in metrics
    assert 'lunaroute_pool_key_out{key="a",provider="claude"} 1.0' in metrics
    def pools_table() -> str:
        return subprocess.run([sys.executable, "-m", "extproc.cli", "pools", "--config", str(pooled.config_path)],
                              capture_output=True, text=True, timeout=60, env={"COLUMNS": "250", "PATH": "/usr/bin"},
                              check=True).stdout

    def row(table: str, key: str) -> str:
        return next(line for line in table.splitlines() if f"│ {key} " in line)

    wait_for(lambda: "requests 98/100 left" in row(pools_table(), "b"), attempts=20)  # the figures are saved
    table = pools_table()
    assert "cooling" in row(table, "a") and "429 at" in row(table, "a")
    assert "ok" in row(table, "b") and "│              2 │" in row(table, "b")  # today's requests
    files = [p for p in pooled.workdir.rglob("*") if p.is_file() and p.name != "key-c"]
    texts = [pooled.log(), metrics, table] + [p.read_bytes().decode(errors="replace") for p in files]
    for text in texts:
        for value in KEYS.values():
            assert value not in text


def test_two_gateways_on_one_redis_agree_on_cooldowns_and_serve_without_it(tmp_path: Path,
                                                                           pool_mock: MockAnthropic) -> None:
    pool_mock.reset()
    key_file = tmp_path / "key-c"
    key_file.write_text(KEYS["c"])
    redis_server = RedisServer()
    gateways = []
    try:
        for name in ("one", "two"):
            (tmp_path / name / "state").mkdir(parents=True)
            cfg = pool_config(pool_mock.base_url, key_file, budgets={"store": redis_server.url},
                              pools={"state_dir": str(tmp_path / name / "state")})
            gateways.append(Gateway(tmp_path / name, cfg, workers=1).start(env=ENV))
        one, two = gateways
        sid = session_on("a")
        pool_mock.quotas.limit({KEYS["a"]: 0})
        assert message(one, sid)[0] == 200  # absorbed by b; gateway one learns that a is out
        wait_for(lambda: out_keys(two) == {"a"})  # gateway two learns it from Redis
        refused = len(pool_mock.quotas.refused)
        status, headers, _ = message(two, sid)
        assert status == 200 and headers["x-lunaroute-pool-key"] != "a"
        assert len(pool_mock.quotas.refused) == refused  # two never tried a

        redis_server.stop()  # the store is gone: both fail open to the plain pick, and still serve
        for gw in gateways:
            wait_for(lambda gw=gw: out_keys(gw) == set())
            for python in (False, True):
                status, headers, _ = message(gw, sid, python=python)
                assert status == 200 and headers["x-lunaroute-pool-key"] == "b"  # a refused, b absorbed it
    finally:
        for gw in gateways:
            gw.stop()
        redis_server.stop()


def test_claude_code_through_a_pooled_provider(claude: str, pooled: Gateway, pool_mock: MockAnthropic,
                                               tmp_path: Path) -> None:
    """The real Claude Code CLI: its own key never reaches the provider, its turns stay on one key, and
    with two keys spent it still gets its answer through the third."""
    proc = run_claude(claude, pooled, "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock Anthropic"
    turns = [r for r in pool_mock.requests if r.path == "/v1/messages"]
    session = turns[-1].headers["x-claude-code-session-id"]
    assert {key_name(r.headers["x-api-key"]) for r in turns} == {start_key(WEIGHTS, session)}

    pool_mock.quotas.limit({KEYS["a"]: 0, KEYS["b"]: 0})
    proc = run_claude(claude, pooled, "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock Anthropic"
    assert served_keys(pool_mock)[-1] == "c"
    assert all("sk-ant-claude-code-user" not in r.headers.get("x-api-key", "") for r in pool_mock.requests)
