"""The web console in a real browser (Debian's chromium, driven by playwright) over the store of a real
gateway — `lunaroute up` with Envoy, the console on its own port — that served both SDKs, a marker
switch and a fallback. Every page renders without a console error, the session page shows the turns
the mock providers received, filters narrow the list, the CSV export is the API's table; with admin
keys the console wants a login, a forged cookie is nobody and a cross-site POST is refused.

Screenshots of each page go to $LUNAROUTE_ARTIFACTS (else a tmp dir). CI installs chromium
(.ci/run); elsewhere the tests say how to get it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
import yaml

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config
from tests.mock_providers import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("LUNAROUTE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ALICE, BOB = "lr-console-test-alice-0123456789abcdef", "lr-console-test-bob-0123456789abcdefgh"
ADMIN = "lr-console-test-admin-0123456789abcdef"
PROMPT_1 = "first question: is <b>bold</b> <script>alert('x')</script> shown as text?"
PROMPT_2 = "second question, on the other provider [LUNAROUTE:gpt]"
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
ENV = {"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_ALICE": ALICE, "LR_BOB": BOB, "LR_ADMIN": ADMIN}


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium ({CHROMIUM}) or playwright missing on CI: .ci/run installs them")
        pytest.skip("needs Debian's chromium (apt-get install chromium) and playwright (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("LUNAROUTE_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, anthropic_mock, openai_mock) -> Iterator[dict]:
    """A gateway with recording and its console under `lunaroute up`, after real traffic."""
    workdir = tmp_path_factory.mktemp("console-gw")
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]},
                                {"model": "gpt-*", "provider": "gpt"}]}
    cfg["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    cfg["recording"] = {"enabled": True, "dir": str(workdir / "sessions")}
    cfg["pricing"] = {"gpt-mock*": {"input_per_mtok": 2, "output_per_mtok": 8}}
    cfg["access"] = {"keys": [{"name": "alice", "key_env": "LR_ALICE"},
                              {"name": "bob", "key_env": "LR_BOB", "providers": ["gpt"]}]}
    cfg["budgets"] = {"store": str(workdir / "budgets.sqlite"), "limits": [{"name": "daily", "key": "*", "usd": 5}]}
    cfg["console"] = {"enabled": True, "port": free_port()}
    gw = Gateway(workdir, cfg, workers=1).start(env=ENV)
    try:
        mocks = _traffic(gw, anthropic_mock, openai_mock)
        url = f"http://127.0.0.1:{cfg['console']['port']}"
        _wait_for_records(url, sessions=3)
        yield {"gw": gw, "url": url, "mocks": mocks, "workdir": workdir, "config": cfg}
    finally:
        gw.stop()


def _traffic(gw: Gateway, anthropic_mock, openai_mock) -> dict:
    """Alice's Claude session (a turn on Anthropic, then a marker switch to gpt), Bob's OpenAI SDK
    session, and Alice's request that falls back from an overloaded Anthropic to gpt."""
    claude = anthropic.Anthropic(base_url=gw.url, api_key=ALICE, max_retries=0,
                                 default_headers={"x-claude-code-session-id": "browser-claude"})
    first = claude.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                                   messages=[{"role": "user", "content": PROMPT_1}])
    history = [{"role": "user", "content": PROMPT_1}, {"role": "assistant", "content": first.content[0].text},
               {"role": "user", "content": PROMPT_2}]
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=history) as stream:
        second = "".join(stream.text_stream)
    received = {"browser-claude": [anthropic_mock.requests[-1].json(), openai_mock.requests[-1].json()]}
    gpt = openai.OpenAI(base_url=gw.url + "/v1", api_key=BOB, max_retries=0,
                        default_headers={"x-session-id": "browser-openai"})
    gpt.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "bob asks gpt"}])
    received["browser-openai"] = [openai_mock.requests[-1].json()]
    anthropic_mock.fail_next(529, OVERLOADED, headers={"retry-after": "30"})
    fallback = anthropic.Anthropic(base_url=gw.url, api_key=ALICE, max_retries=0,
                                   default_headers={"x-claude-code-session-id": "browser-fallback"})
    fallback.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                             messages=[{"role": "user", "content": "this one falls back"}])
    received["browser-fallback"] = [openai_mock.requests[-1].json()]
    return {"received": received, "answers": [first.content[0].text, second]}


def _get(url: str, cookie: str | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={**({"cookie": cookie} if cookie else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _wait_for_records(url: str, sessions: int) -> None:
    """The writer thread records after the response: poll the API, bounded."""
    for _ in range(300):
        try:
            status, body = _get(url + "/api/sessions")
        except OSError:  # the console is still starting
            status, body = 0, b""
        if status == 200 and len(json.loads(body)["sessions"]) >= sessions:
            return
        time.sleep(0.1)
    raise AssertionError(f"the console never listed {sessions} sessions")


def _browse(url: str, fn) -> None:
    sync_playwright = _playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            fn(browser)
        finally:
            browser.close()


PAGES = [("overview", "/"), ("overview-hour", "/?window=hour"), ("overview-30d", "/?window=30d"),
         ("sessions", "/sessions"), ("session", "/sessions/browser-claude"), ("spend", "/spend"),
         ("spend-by-day", "/spend?group_by=day"), ("keys", "/keys"), ("routing", "/routing")]


def test_every_page_renders_without_console_errors(served: dict, artifacts: Path) -> None:
    def visit(browser) -> None:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
        for name, path in PAGES:
            response = page.goto(served["url"] + path)
            assert response is not None and response.status == 200, path
            assert page.locator("main h1").count() == 1, path
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        assert problems == []

    _browse(served["url"], visit)


def test_the_session_page_shows_the_turns_the_providers_received(served: dict) -> None:
    received = served["mocks"]["received"]["browser-claude"]

    def visit(browser) -> None:
        page = browser.new_page()
        page.goto(served["url"] + "/sessions/browser-claude")
        turns = page.locator("article.turn")
        assert turns.count() == len(received) == 2
        first, second = turns.nth(0), turns.nth(1)
        # turn 1 went to Anthropic by rule, as sent; its prompt is text, not markup
        assert received[0]["messages"][-1]["content"] == PROMPT_1
        assert PROMPT_1 in first.locator(".asked").inner_text()
        assert page.evaluate("document.scripts.length") == 0 and first.locator(".asked b").count() == 0
        assert "anthropic" in first.locator("header").inner_text() and "rule" in first.locator(".reason").inner_text()
        assert served["mocks"]["answers"][0] in first.locator(".answer").inner_text()
        # turn 2: the marker switched it to gpt, which got the prompt without the marker
        assert received[1]["messages"][-1]["content"] == PROMPT_2.replace(" [LUNAROUTE:gpt]", "")
        assert "second question" in second.locator(".asked").inner_text()
        assert PROMPT_1 not in second.locator(".asked").inner_text()  # history is not repeated
        header = second.locator("header").inner_text()
        assert "gpt" in header and "marker" in second.locator(".reason").inner_text()
        assert served["mocks"]["answers"][1] in second.locator(".answer").inner_text()
        for label in ("tokens in / out", "cache read", "TTFT", "duration", "cost"):
            assert label in second.locator(".facts").inner_text()

        page.goto(served["url"] + "/sessions/browser-fallback")  # Anthropic was overloaded: gpt answered
        assert page.locator(".reason").inner_text() == "rule, fallback from anthropic"
        assert "this one falls back" in page.locator(".asked").inner_text()

    _browse(served["url"], visit)


def test_filters_narrow_the_sessions_list(served: dict) -> None:
    def visit(browser) -> None:
        page = browser.new_page()
        page.goto(served["url"] + "/sessions")
        everyone = page.locator("#sessions tbody tr").count()
        assert everyone == 3
        page.select_option("select[name=key]", "bob")
        page.click("form.filters button")
        page.wait_for_url("**/sessions?*key=bob*")
        rows = page.locator("#sessions tbody tr")
        assert rows.count() == 1 and "browser-openai" in rows.inner_text()
        page.goto(served["url"] + "/sessions?provider=anthropic")
        assert page.locator("#sessions tbody tr").count() == 1  # only browser-claude's first turn used it
        assert "browser-claude" in page.locator("#sessions tbody").inner_text()

    _browse(served["url"], visit)


def test_the_csv_export_is_the_apis_spend_table(served: dict, tmp_path: Path) -> None:
    def visit(browser) -> None:
        page = browser.new_page(accept_downloads=True)
        page.goto(served["url"] + "/spend?group_by=key")
        with page.expect_download() as download:
            page.click("#csv")
        target = tmp_path / "spend.csv"
        download.value.save_as(target)
        rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
        _status, body = _get(served["url"] + "/api/spend?group_by=key")
        api = json.loads(body)["rows"]
        assert [r["key"] for r in rows] == [r["key"] for r in api] and {r["key"] for r in rows} == {"alice", "bob"}
        for got, want in zip(rows, api, strict=True):
            assert int(got["requests"]) == want["requests"] and float(got["cost_usd"]) == pytest.approx(
                want["cost_usd"])
            assert int(got["input"]) == want["input"] and int(got["output"]) == want["output"]

    _browse(served["url"], visit)


def test_provider_health_comes_from_envoys_own_stats_under_up(served: dict) -> None:
    _status, body = _get(served["url"] + "/keys")
    assert body.count(b'class="state-healthy"') == 2 and b"state-unknown" not in body


def test_no_key_digest_or_secret_is_rendered(served: dict) -> None:
    import hashlib

    secrets = [ALICE, BOB, TEST_OPENAI_KEY] + [hashlib.sha256(k.encode()).hexdigest() for k in (ALICE, BOB)]
    for _name, path in [*PAGES, ("api", "/api/sessions/browser-claude"), ("api", "/api/overview")]:
        _status, body = _get(served["url"] + path)
        assert not any(s.encode() in body for s in secrets), path


# -- with admin keys -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def locked(served: dict) -> Iterator[str]:
    """A second console on the same store, with an admin key and key holders allowed in."""
    cfg = {**served["config"], "console": {"port": free_port(), "admin_keys": [{"name": "ops", "key_env": "LR_ADMIN"}],
                                           "key_holders_see_own_sessions": True}}
    path = served["workdir"] / "locked.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "extproc.cli", "console", "--config", str(path)],
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{cfg['console']['port']}"
    try:
        for _ in range(100):
            try:
                _get(url + "/login")
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_off_loopback_the_console_refuses_to_start_without_an_admin_key(served: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "extproc.cli", "console", "--config", str(served["gw"].config_path),
                          "--host", "0.0.0.0", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **ENV})
    assert out.returncode == 2 and "console.admin_keys" in out.stderr and "Traceback" not in out.stderr


def test_admin_keys_require_a_login_and_a_forged_cookie_is_nobody(locked: str) -> None:
    assert _get(locked + "/api/sessions")[0] == 401
    assert _get(locked + "/api/sessions", cookie="lr_console=forged-token-0123456789")[0] == 401

    def visit(browser) -> None:
        context = browser.new_context()
        page = context.new_page()
        page.goto(locked + "/sessions")
        assert page.url.endswith("/login")
        page.fill("input[name=key]", "lr-not-a-key-0123456789abcdef")
        page.click("form.login button")
        assert "does not open this console" in page.locator(".error").inner_text()
        page.fill("input[name=key]", ADMIN)
        page.click("form.login button")
        page.wait_for_url(locked + "/")
        assert "ops" in page.locator("header .who").inner_text()
        cookie = next(c for c in context.cookies() if c["name"] == "lr_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN not in cookie["value"]
        page.goto(locked + "/sessions")
        assert page.locator("#sessions tbody tr").count() == 3

        forged = browser.new_context()
        forged.add_cookies([{"name": "lr_console", "value": cookie["value"][::-1], "url": locked}])
        other = forged.new_page()
        other.goto(locked + "/sessions")
        assert other.url.endswith("/login")

        page.click("header form button")  # log out (a POST with the CSRF token)
        page.wait_for_url(locked + "/login")
        assert _get(locked + "/api/sessions", cookie=f"lr_console={cookie['value']}")[0] == 401

    _browse(locked, visit)


def test_a_cross_site_post_is_refused(locked: str) -> None:
    def visit(browser) -> None:
        page = browser.new_page()
        page.set_content(f'<form method="post" action="{locked}/login"><input name="key" value="{ADMIN}">'
                         '<input name="csrf" value="x"><button>go</button></form>')
        with page.expect_navigation():
            page.click("button")
        assert "cross-site request refused" in page.content()

    _browse(locked, visit)
    status, _ = _post(locked + "/login", {"key": ADMIN, "csrf": "x"}, {"origin": "http://evil.example"})
    assert status == 403
    status, _ = _post(locked + "/login", {"key": ADMIN, "csrf": "x"}, {})  # same-site, but no CSRF cookie
    assert status == 403


def _post(url: str, form: dict, headers: dict) -> tuple[int, bytes]:
    from urllib.parse import urlencode

    req = urllib.request.Request(url, data=urlencode(form).encode(), method="POST",
                                 headers={"content-type": "application/x-www-form-urlencoded", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_key_holder_sees_only_their_own_sessions(locked: str) -> None:
    def visit(browser) -> None:
        page = browser.new_page()
        page.goto(locked + "/login")
        page.fill("input[name=key]", BOB)
        page.click("form.login button")
        page.wait_for_url(locked + "/")
        page.goto(locked + "/sessions")
        rows = page.locator("#sessions tbody tr")
        assert rows.count() == 1 and "browser-openai" in rows.inner_text()
        assert page.goto(locked + "/sessions/browser-claude").status == 404
        assert page.goto(locked + "/keys").status == 404
        page.goto(locked + "/spend")
        assert "alice" not in page.locator("#spend").inner_text()

    _browse(locked, visit)
