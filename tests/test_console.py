"""The console's JSON API, pages and guard on a small store written by the record writer's own
`insert` (Starlette's test client, in-process): filters, keyset pages, spend groups and CSV, the
overview windows, who sees what, what is refused, and that client text is escaped."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from extproc import cli, config
from extproc.config import ConfigError
from extproc.console import charts, conversation, queries
from extproc.console.app import create_app
from extproc.observe import sessions
from extproc.observe.budgets import Budgets

ADMIN = "lr-console-unit-admin-0123456789abc"
BOB = "lr-console-unit-bob-0123456789abcdef"
BASE = "http://127.0.0.1:8081"


def _store(directory: Path, now: float) -> None:
    """12 sessions: alice's on anthropic, bob's on gpt; every third has an error; one hostile. Times
    are seconds before `now`, the moment the test starts."""
    with sessions.open_db(str(directory)) as db:
        for i in range(24):
            key, provider = ("alice", "anthropic") if i % 2 == 0 else ("bob", "gpt")
            error = i % 6 == 0
            sessions.insert(db, {
                "ts": now - 3000 + i * 100, "session": f"s{i % 12:02d}", "key": key, "client": "anthropic",
                "path": "/v1/messages", "provider": provider,
                "model": "claude-x" if provider == "anthropic" else "gpt-y",
                "reason": "rule", "status": 529 if error else 200, "outcome": "error" if error else "ok",
                "usage": {"input": 100, "output": 10, "cache_read": 40}, "cost_usd": 0.25, "duration_ms": 50.0,
                "ttft_ms": 20.0, "overhead_ms": 1.0,
                "request": orjson.dumps({"messages": [{"role": "user", "content": f"question {i} <img src=x>"}]}),
                "response": orjson.dumps({"content": [{"type": "text", "text": f"answer {i}"}]})}, None)
        sessions.insert(db, {"ts": now - 10, "session": "=HYPERLINK(1)", "key": "=cmd|' /C calc'!A0",
                             "provider": "anthropic", "model": "<script>alert(1)</script>", "status": 200,
                             "outcome": "ok", "usage": {"input": 1}, "cost_usd": 0.0,
                             "request": b'{"messages":[{"role":"user","content":"</pre><script>x()</script>"}]}'}, None)


def _config(directory: Path, **console: object) -> config.Config:
    return config.parse({
        "providers": {"anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com",
                                    "auth": "passthrough"},
                      "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_KEY"}},
        "recording": {"enabled": True, "dir": str(directory)},
        "access": {"keys": [{"name": "alice", "key_sha256": "a" * 64},
                            {"name": "bob", "key_sha256": hashlib.sha256(BOB.encode()).hexdigest(),
                             "providers": ["gpt"]}]},
        "budgets": {"store": str(directory / "budgets.sqlite"), "limits": [
            {"name": "per-key", "key": "*", "usd": 2.0}, {"name": "gpt-day", "provider": "gpt", "tokens": 1000}]},
        "console": console,
    }, env={})


@pytest.fixture
def store(tmp_path: Path) -> Path:
    _store(tmp_path, time.time())
    return tmp_path


@pytest.fixture
def client(store: Path) -> TestClient:
    return TestClient(create_app(_config(store)), base_url=BASE)


def _pages(client: TestClient, url: str) -> list[list[str]]:
    out, cursor = [], None
    for _ in range(20):
        body = client.get(url + (f"&cursor={cursor}" if cursor else "")).json()
        out.append([s["session"] for s in body["sessions"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("pagination never ended")


def test_sessions_page_by_keyset_newest_first_without_repeats(client: TestClient) -> None:
    pages = _pages(client, "/api/sessions?limit=5")
    flat = [s for page in pages for s in page]
    assert [len(p) for p in pages] == [5, 5, 3] and len(set(flat)) == 13
    assert flat[0] == "=HYPERLINK(1)" and flat[1:] == [f"s{i:02d}" for i in range(11, -1, -1)]


def test_filters_narrow_the_list(client: TestClient) -> None:
    def listed(query: str) -> set[str]:
        return {s["session"] for s in client.get(f"/api/sessions?{query}").json()["sessions"]}

    assert listed("key=bob") == {f"s{i:02d}" for i in range(1, 12, 2)}
    assert listed("provider=gpt&model=gpt-y") == listed("key=bob")
    assert listed("provider=gpt&model=claude-x") == set()
    assert listed("status=error") == {"s00", "s06"}
    assert listed("since=14m") == {"=HYPERLINK(1)", "s11", "s10"}  # 10 s, 700 s and 800 s ago
    assert listed(f"since={time.time() - 840}") == listed("since=14m")


@pytest.mark.parametrize("query", ["since=yesterday", "limit=0", "limit=1000", "status=maybe", "cursor=%%%",
                                   "cursor=WzEsMl0", "since=nan"])
def test_bad_parameters_are_a_400_that_names_them(client: TestClient, query: str) -> None:
    response = client.get(f"/api/sessions?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()["error"]


def test_a_session_holds_its_turns_as_recorded(client: TestClient) -> None:
    body = client.get("/api/sessions/s03").json()
    assert [t["request"]["messages"][0]["content"] for t in body["turns"]] == ["question 3 <img src=x>",
                                                                              "question 15 <img src=x>"]
    assert body["requests"] == 2 and body["cost_usd"] == 0.5 and body["cache_read_share"] == 0.4
    assert all("client_ip" not in t and t["route"] == "rule" for t in body["turns"])
    assert client.get("/api/sessions/nope").status_code == 404


def test_spend_groups_and_its_csv_is_the_same_table(client: TestClient) -> None:
    by_key = client.get("/api/spend?group_by=key").json()
    assert [(r["key"], r["requests"], r["cost_usd"]) for r in by_key["rows"]] == [
        ("alice", 12, 3.0), ("bob", 12, 3.0), ("=cmd|' /C calc'!A0", 1, 0.0)]
    rows = list(csv.reader(io.StringIO(client.get("/spend.csv?group_by=key").text)))
    assert rows[0] == ["key", *queries.SPEND_CSV_COLUMNS]
    assert [r[0] for r in rows[1:]] == ["alice", "bob", "'=cmd|' /C calc'!A0"]  # no formula for a spreadsheet
    assert [float(r[-1]) for r in rows[1:]] == [r["cost_usd"] for r in by_key["rows"]]
    by_day = client.get("/api/spend?group_by=day&since=7d").json()
    assert sum(r["requests"] for r in by_day["rows"]) == 25
    assert {r["provider"] for r in client.get("/api/spend?group_by=provider").json()["rows"]} == {"anthropic", "gpt"}
    assert client.get("/api/spend?group_by=colour").status_code == 400


@pytest.mark.parametrize("window", ["hour", "day", "30d"])
def test_the_overview_counts_the_same_in_every_window(client: TestClient, window: str) -> None:
    body = client.get(f"/api/overview?window={window}").json()
    assert body["totals"]["requests"] == 25 and body["totals"]["errors"] == 4
    chart = body["charts"]["requests"]
    assert sum(sum(v) for v in chart["series"].values()) == 25
    assert {r["key"] for r in body["by_key"]} == {"alice", "bob", "=cmd|' /C calc'!A0"}


def test_budgets_are_read_from_the_gateways_store_with_use_and_reset(store: Path) -> None:
    cfg = _config(store)
    budgets = Budgets(cfg.budgets)
    plan = budgets.plan("bob", "gpt", "s01", tokens=300, usd=0.5, input_tokens=300)
    assert plan is not None and budgets.reserve(plan) is None
    client = TestClient(create_app(cfg), base_url=BASE)
    limits = {(b["name"], b["scope"]): b for b in client.get("/api/budgets").json()["limits"]}
    assert limits[("per-key", "key=bob")]["used"] == 0.5 and limits[("per-key", "key=bob")]["share"] == 0.25
    assert limits[("gpt-day", "provider=gpt")]["used"] == 300 and limits[("gpt-day", "provider=gpt")]["cap"] == 1000
    assert limits[("gpt-day", "provider=gpt")]["resets"] > time.time()
    assert "per-key" in client.get("/spend").text


def test_client_text_is_escaped_on_every_page(client: TestClient) -> None:
    for url in ("/", "/sessions", "/sessions/=HYPERLINK(1)", "/spend", "/routing", "/keys", "/?window=hour"):
        html = client.get(url).text
        assert "<script>" not in html and "<img src=x>" not in html, url
    assert "&lt;script&gt;x()&lt;/script&gt;" in client.get("/sessions/=HYPERLINK(1)").text


def test_no_key_digest_or_secret_is_rendered(client: TestClient) -> None:
    digest = hashlib.sha256(BOB.encode()).hexdigest()
    keys = client.get("/keys").text
    assert "bob" in keys and "env OPENAI_KEY" in keys
    assert digest not in keys and "a" * 64 not in keys


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for url in ("/", "/api/sessions", "/nope", "/static/console.css"):
        headers = client.get(url).headers
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


def test_an_unknown_host_is_refused(client: TestClient) -> None:
    assert client.get("/", headers={"host": "rebound.example"}).status_code == 421
    assert client.get("/", headers={"host": "localhost:8081"}).status_code == 200
    assert client.get("/", headers={"host": "[::1]:8081"}).status_code == 200


def test_off_loopback_an_admin_key_is_required(store: Path) -> None:
    with pytest.raises(ConfigError, match="console.admin_keys"):
        _config(store, host="0.0.0.0").console.check_exposure()
    with pytest.raises(ConfigError, match="console.admin_keys"):
        config.parse({"providers": {"a": {"type": "anthropic", "base_url": "https://api.anthropic.com"}},
                      "console": {"enabled": True, "host": "0.0.0.0"}}, env={})
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    _config(store, host="0.0.0.0", admin_keys=[entry]).console.check_exposure()


def _login(client: TestClient, key: str) -> int:
    page = client.get("/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/login", data={"key": key, "csrf": token}, follow_redirects=False).status_code


def test_with_admin_keys_every_page_and_call_wants_a_login(store: Path) -> None:
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    client = TestClient(create_app(_config(store, admin_keys=[entry])), base_url=BASE)
    assert client.get("/sessions", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/spend").status_code == 401
    assert _login(client, "lr-wrong-key-0123456789abcdef") == 401
    assert _login(client, ADMIN) == 303
    assert client.get("/api/spend").status_code == 200 and ADMIN not in str(client.cookies)
    token = client.cookies["lr_console"]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged = TestClient(client.app, base_url=BASE, cookies={"lr_console": altered})
    assert forged.get("/api/spend").status_code == 401


def test_the_login_form_needs_its_csrf_token_and_a_same_origin_post(store: Path) -> None:
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    client = TestClient(create_app(_config(store, admin_keys=[entry])), base_url=BASE)
    client.get("/login")
    assert client.post("/login", data={"key": ADMIN, "csrf": "guess"}, follow_redirects=False).status_code == 403
    assert client.post("/login", data={"key": ADMIN}, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert client.post("/login", data={"key": ADMIN}, headers={"origin": "https://evil.example"}).status_code == 403


def test_a_key_holder_sees_only_their_own(store: Path) -> None:
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    client = TestClient(create_app(_config(store, admin_keys=[entry], key_holders_see_own_sessions=True)),
                        base_url=BASE)
    assert _login(client, BOB) == 303
    listed = {s["session"] for s in client.get("/api/sessions?key=alice").json()["sessions"]}  # key= is ignored
    assert listed == {f"s{i:02d}" for i in range(1, 12, 2)}
    assert client.get("/api/sessions/s00").status_code == 404
    assert {r["key"] for r in client.get("/api/spend?group_by=key").json()["rows"]} == {"bob"}
    assert client.get("/api/overview").json()["totals"]["requests"] == 12
    assert {b["scope"] for b in client.get("/api/budgets").json()["limits"]} <= {"key=bob"}
    assert client.get("/keys").status_code == 404


def test_without_the_option_a_gateway_key_does_not_open_the_console(store: Path) -> None:
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    client = TestClient(create_app(_config(store, admin_keys=[entry])), base_url=BASE)
    assert _login(client, BOB) == 401


def test_keys_new_admin_prints_a_console_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "new", "--admin", "--name", "ops"]) == 0
    out = capsys.readouterr().out
    key = out.split("it is shown only now): ")[1].split()[0]
    assert "console:\n    admin_keys:" in out and hashlib.sha256(key.encode()).hexdigest() in out
    parsed = config.parse({"providers": {"a": {"type": "anthropic", "base_url": "https://api.anthropic.com"}},
                           "console": {"admin_keys": [{"name": "ops", "key_env": "K"}]}}, env={})
    assert parsed.console.admin_digests({"K": key}) == {hashlib.sha256(key.encode()).hexdigest():
                                                        parsed.console.admin_keys[0]}


def test_a_turn_reads_as_new_messages_and_the_answer_in_each_dialect() -> None:
    first = {"system": "be brief", "messages": [{"role": "user", "content": "hi"}]}
    second = {"system": "be brief", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42 files"},
                                     {"type": "text", "text": "and now?"}]}]}
    assert [(p["role"], p["kind"]) for p in conversation.request_parts(first, None, "anthropic")] == [
        ("system", "text"), ("user", "text")]
    assert [(p["kind"], p["text"]) for p in conversation.request_parts(second, first, "anthropic")] == [
        ("tool_result", "42 files"), ("text", "and now?")]
    answer = {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "done"},
                          {"type": "tool_use", "name": "Bash", "input": {"cmd": "ls"}}]}
    assert [(p["kind"], p["name"]) for p in conversation.response_parts(answer, "anthropic")] == [
        ("thinking", None), ("text", None), ("tool_call", "Bash")]
    chat = {"choices": [{"message": {"role": "assistant", "content": None, "reasoning_content": "r",
                                     "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}}]}
    assert [(p["kind"], p["text"]) for p in conversation.response_parts(chat, "openai")] == [
        ("thinking", "r"), ("tool_call", '{\n  "a": 1\n}')]
    text = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "t"}]}
    responses = {"output": [{"type": "reasoning", "summary": [{"text": "s"}]}, text]}
    assert [p["kind"] for p in conversation.response_parts(responses, "openai-responses")] == ["thinking", "text"]
    assert conversation.response_parts({"error": {"message": "overloaded"}}, "anthropic")[0]["kind"] == "error"


def test_chart_labels_are_escaped_and_small_series_are_summed_as_others() -> None:
    series = {f"<k{i}>": [float(i), 1.0] for i in range(12)}
    svg = str(charts.stacked_bars({"buckets": [0, 60], "size": 60, "series": series}, "t<i>tle"))
    assert "<k" not in svg.replace("&lt;k", "") and "t&lt;i&gt;tle" in svg
    assert svg.count('<li>') == len(charts.PALETTE) and "others" in svg


def test_a_long_session_is_shown_fifty_turns_a_page(tmp_path: Path) -> None:
    with sessions.open_db(str(tmp_path)) as db:
        history: list[dict] = []
        start = time.time() - 1000
        for i in range(120):
            history = [*history, {"role": "user", "content": f"prompt {i}"}]
            sessions.insert(db, {"ts": start + i, "session": "long", "provider": "anthropic", "status": 200,
                                 "outcome": "ok", "usage": {}, "client": "anthropic",
                                 "request": orjson.dumps({"messages": history})}, None)
            history.append({"role": "assistant", "content": f"answer {i}"})
    client = TestClient(create_app(_config(tmp_path)), base_url=BASE)
    pages = [client.get(f"/api/sessions/long?offset={o}").json() for o in (0, 50, 100)]
    assert [len(p["turns"]) for p in pages] == [50, 50, 20] and [p["more"] for p in pages] == [True, True, False]
    assert pages[1]["turns"][0]["request"]["messages"][-1]["content"] == "prompt 50"
    html = client.get("/sessions/long?offset=50").text
    assert 'id="turn-51"' in html and "prompt 50" in html and "prompt 49" not in html  # only what turn 51 added
    assert "later turns" in html and "earlier turns" in html
    assert client.get("/api/sessions/long?offset=-1").status_code == 400


def test_logout_wants_the_forms_csrf_token(store: Path) -> None:
    entry = {"name": "ops", "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest()}
    client = TestClient(create_app(_config(store, admin_keys=[entry])), base_url=BASE)
    assert _login(client, ADMIN) == 303
    assert client.post("/logout", data={"csrf": "guess"}).status_code == 403
    assert client.get("/api/spend").status_code == 200  # still logged in
    token = client.get("/").text.split('name="csrf" value="')[1].split('"')[0]
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert client.get("/api/spend").status_code == 401


def test_an_enabled_console_needs_its_admin_keys_to_be_where_the_config_says(store: Path) -> None:
    cfg = config.parse({"providers": {"a": {"type": "anthropic", "base_url": "https://api.anthropic.com"}},
                        "console": {"enabled": True, "admin_keys": [{"name": "ops", "key_env": "LR_NOT_SET_X"}]}},
                       env={})
    with pytest.raises(ConfigError, match=r"console.admin_keys\[ops\].key_env"):
        cfg.check_secrets()


def test_with_key_holders_allowed_even_a_loopback_console_wants_a_login(store: Path) -> None:
    client = TestClient(create_app(_config(store, key_holders_see_own_sessions=True)), base_url=BASE)
    assert client.get("/api/sessions").status_code == 401
    assert _login(client, BOB) == 303
    assert {s["key"] for s in client.get("/api/sessions").json()["sessions"]} == {"bob"}
