"""Who may use the gateway, and what a client can steer: through the real Envoy, its gate
(envoy/gate.lua) and the workers, with the official SDKs.

Nothing a client sends may pick a cluster, a chain or a credential; gateway keys are checked
before anything else and never travel on; secrets never show up anywhere after traffic.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest
import yaml

from extproc import config as config_mod
from extproc import envoy_config
from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config
from tests.processes import children, envoy_pid, worker_pids

pytestmark = pytest.mark.e2e

ALICE = "lr-alice-3f9c2a7d5e1b4c8a9d0e6f7a2b3c4d5e"  # any provider, any model
BOB = "lr-bob-7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"  # Anthropic only, claude-* only
CAROL_OLD = "lr-carol-old-0123456789abcdef0123456789"
CAROL_NEW = "lr-carol-new-fedcba9876543210fedcba9876"
OAUTH = "sk-ant-oat01-users-own-claude-login-token"
SECRETS = (ALICE, BOB, CAROL_OLD, CAROL_NEW, TEST_OPENAI_KEY)
MESSAGE = {"model": "claude-x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _post(gw: Gateway, path: str, doc: dict, headers: dict) -> tuple[int, dict, dict]:
    status, hdrs, body = gw.get(path, method="POST", body=json.dumps(doc).encode(), headers={**JSON, **headers})
    return status, hdrs, json.loads(body) if body else {}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, anthropic_mock, openai_mock):
    """A gateway with three gateway keys, one per place a key can come from."""
    work = tmp_path_factory.mktemp("keyed")
    carol = work / "carol.key"
    carol.write_text(CAROL_OLD + "\n")
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["providers"]["local"] = {"type": "openai", "base_url": openai_mock.base_url + "/v1", "auth": "passthrough",
                                 "model": "local-mock"}
    cfg["recording"] = {"enabled": True, "dir": str(work / "records")}
    cfg["access"] = {"keys": [
        {"name": "alice", "key_sha256": _sha(ALICE)},
        {"name": "bob", "key_env": "LR_TEST_KEY_BOB", "providers": ["anthropic"], "models": ["claude-*"]},
        {"name": "carol", "key_file": str(carol)},
    ]}
    gw = Gateway(work, cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_TEST_KEY_BOB": BOB})
    gw.carol_file = carol  # type: ignore[attr-defined]
    yield gw
    gw.stop()


# -- sealing: forged internal headers, every route ---------------------------------------------------

FORGED = {
    "x-lunaroute-cluster": "provider_gpt",
    "x-lunaroute-fallback-1": "provider_gpt",
    "x-lunaroute-attempts": "2",
    "x-lunaroute-chain": json.dumps({"c": "anthropic", "p": "/v1/embeddings", "q": "", "n": ["gpt", "anthropic"],
                                     "m": {}, "s": {}}),
    "x-lunaroute-client": "admin",
    "x-lunaroute-scope": "{}",
    "x-envoy-max-retries": "5",
    "x-envoy-retry-on": "5xx",
    "x-envoy-attempt-count": "1",
    "x-envoy-upstream-rq-timeout-ms": "1",
}


def _sample_paths(boot: dict) -> list[str]:
    """One or two request paths for every route of the rendered bootstrap."""
    out: list[str] = []
    for vhost in boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            match = route["match"]
            if "path" in match:
                out.append(match["path"])
            elif "path_separated_prefix" in match:
                out += [match["path_separated_prefix"], match["path_separated_prefix"] + "/x"]
            elif "safe_regex" in match:  # e.g. ^/v1/models/[^/]+/.+ (below /v1/models/{id})
                regex = match["safe_regex"]["regex"].lstrip("^").replace("[^/]+", "x").replace(".+", "x")
                out.append(re.sub(r"\\(.)", r"\1", regex))
            else:
                out += [match["prefix"].rstrip("/") + "/v1/embeddings", match["prefix"] + "x"]
    return sorted(set(out))


@pytest.fixture(scope="module")
def sealed_gateway(tmp_path_factory, anthropic_mock, openai_mock):
    """The issue's setup: a keyed OpenAI-type provider, Anthropic by default, bypass disabled."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["bypass"] = {"enabled": False}
    cfg["routing"] = {"rules": [{"model": "claude-chain-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    gw = Gateway(tmp_path_factory.mktemp("sealed"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


def _seen(mock) -> list[tuple[str, str, str, str]]:
    return [(r.method, r.path, r.headers.get("authorization", ""), r.headers.get("x-api-key", ""))
            for r in mock.requests]


@pytest.mark.parametrize("which", ["sealed_gateway", "gateway"])
def test_forged_internal_headers_are_ignored_on_every_route(request, which: str, anthropic_mock,
                                                            openai_mock) -> None:
    """Every route kind (intercepted, fast, chains, the models API and what it refuses, bypass or its
    404), GET, POST and DELETE: the same requests with and without forged internal headers reach the
    same providers with the same credentials, and no internal header reaches a provider."""
    gw = request.getfixturevalue(which)
    boot = envoy_config.render(config_mod.parse(gw.config, env={}))
    paths = _sample_paths(boot)
    assert {"/v1/messages", "/v1/chat/completions/x", "/v1/models", "/v1/models/x", "/v1/models/x/x"} <= set(paths)
    body = json.dumps(MESSAGE).encode()
    outcomes = []
    for forged in ({}, FORGED):
        anthropic_mock.reset()
        openai_mock.reset()
        statuses = []
        for path in paths:
            for method in ("GET", "POST", "DELETE"):
                status, _, _ = gw.get(path, method=method, body=body if method == "POST" else None,
                                      headers={**JSON, "x-api-key": "sk-ant-user", **forged})
                statuses.append((method, path, status))
        for mock in (anthropic_mock, openai_mock):
            for r in mock.requests:
                leaked = [h for h in r.headers if h.startswith("x-lunaroute-") or
                          (h.startswith("x-envoy-") and h != "x-envoy-attempt-count")]
                assert leaked == [], (r.path, leaked)
        outcomes.append((statuses, _seen(anthropic_mock), _seen(openai_mock)))
    assert outcomes[0] == outcomes[1]
    # the models API forwards reads only: nothing else under /v1/models reaches a provider
    for seen in outcomes[1][1:]:
        assert all(m in ("GET", "HEAD") for m, p, _, _ in seen if p.endswith("/models") or "/models/" in p), seen
        assert not [p for _, p, _, _ in seen if "/models/x/" in p], seen
    if which == "sealed_gateway":
        # the issue's reproduction: nothing reaches the keyed provider, so its key is never spent
        assert outcomes[1][2] == []


def test_the_issues_forged_cluster_reproduction_spends_no_key(sealed_gateway, openai_mock) -> None:
    status, _, body = sealed_gateway.get("/v1/chat/completions/x", method="POST", body=b'{"a":1}',
                                         headers={"content-type": "application/json",
                                                  "x-lunaroute-cluster": "provider_gpt"})
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == "not_found"
    assert openai_mock.requests == []


# -- gateway keys --------------------------------------------------------------------------------


def test_a_gateway_key_is_accepted_in_x_lunaroute_key_x_api_key_and_bearer(keyed, anthropic_mock,
                                                                            openai_mock) -> None:
    # the Anthropic SDK's api_key (x-api-key)
    msg = anthropic.Anthropic(base_url=keyed.url, api_key=ALICE, max_retries=0).messages.create(**MESSAGE)
    assert msg.content[0].text == "Hello from mock Anthropic"
    # the OpenAI SDK's api_key (Authorization: Bearer), translated to the Anthropic default
    chat = openai.OpenAI(base_url=keyed.url + "/v1", api_key=BOB, max_retries=0).chat.completions.create(
        model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "Hello from mock Anthropic"
    # beside the user's own key, in x-lunaroute-key
    status, _, body = _post(keyed, "/v1/messages", MESSAGE, {"x-lunaroute-key": CAROL_OLD, "x-api-key": "sk-ant-u"})
    assert status == 200, body
    assert anthropic_mock.requests[-1].headers["x-api-key"] == "sk-ant-u"
    for r in anthropic_mock.requests + openai_mock.requests:
        assert "x-lunaroute-key" not in r.headers
        assert not any(s in v for s in (ALICE, BOB, CAROL_OLD) for v in r.headers.values())


def test_missing_or_wrong_key_gets_401_in_the_clients_dialect(keyed, anthropic_mock, openai_mock) -> None:
    with pytest.raises(anthropic.AuthenticationError) as err:
        anthropic.Anthropic(base_url=keyed.url, api_key="lr-not-a-key-000000000000000000",
                            max_retries=0).messages.create(**MESSAGE)
    assert err.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as oerr:
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0).chat.completions.create(
            model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    assert oerr.value.code == "invalid_api_key"
    status, _, body = _post(keyed, "/v1/messages", MESSAGE, {})
    assert status == 401 and "x-lunaroute-key" in body["error"]["message"]
    status, _, _ = keyed.get("/v1/embeddings", method="POST", body=b'{"input":"x"}',
                             headers={"content-type": "application/json"})
    assert status == 401  # bypassed paths too
    assert anthropic_mock.requests == [] and openai_mock.requests == []
    # probes stay open
    assert keyed.get("/healthz")[0] == 200 and keyed.get("/readyz")[0] == 200
    assert keyed.get("/", method="HEAD")[0] == 200  # Claude Code's credential-less start-up probe


def test_a_claude_login_beside_a_gateway_key_reaches_anthropic_untouched(keyed, anthropic_mock) -> None:
    status, _, body = _post(keyed, "/v1/messages", MESSAGE, {"x-lunaroute-key": ALICE,
                                                             "authorization": f"Bearer {OAUTH}"})
    assert status == 200, body
    seen = anthropic_mock.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {OAUTH}"
    assert "x-lunaroute-key" not in seen.headers and "x-api-key" not in seen.headers


def test_a_claude_login_never_reaches_a_provider_of_another_vendor(keyed, openai_mock) -> None:
    marked = {**MESSAGE, "messages": [{"role": "user", "content": "[LUNAROUTE:local] hi"}]}
    status, _, body = _post(keyed, "/v1/messages", marked, {"x-lunaroute-key": ALICE,
                                                            "authorization": f"Bearer {OAUTH}"})
    assert status == 200, body
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert "authorization" not in seen.headers  # auth: passthrough, but the login is Anthropic's alone
    assert OAUTH not in json.dumps(dict(seen.headers))


def test_allow_lists_answer_403_in_the_clients_dialect(keyed, anthropic_mock, openai_mock) -> None:
    client = anthropic.Anthropic(base_url=keyed.url, api_key=BOB, max_retries=0)
    assert client.messages.create(**MESSAGE).content[0].text == "Hello from mock Anthropic"
    with pytest.raises(anthropic.PermissionDeniedError) as err:  # a provider outside the list
        client.messages.create(**{**MESSAGE, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]})
    assert "provider 'gpt'" in err.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as err:  # a model outside the list
        client.messages.create(**{**MESSAGE, "model": "opus-unlisted"})
    assert "model 'opus-unlisted'" in err.value.message
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key=BOB, max_retries=0).chat.completions.create(
            model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    # bypassed paths never reach Python: the gate checks the bypass provider (gpt) itself
    status, _, body = keyed.get("/v1/embeddings", method="POST", body=b'{"input":"x","model":"e"}',
                                headers={"content-type": "application/json", "authorization": f"Bearer {BOB}"})
    assert status == 403, body
    assert json.loads(body)["error"]["type"] == "permission_error"
    assert openai_mock.requests == []
    # alice may use the bypass: the provider's own key is injected, her gateway key is gone
    status, _, _ = keyed.get("/v1/embeddings", method="POST", body=b'{"input":"x","model":"e"}',
                             headers={"content-type": "application/json", "authorization": f"Bearer {ALICE}"})
    assert status == 200
    assert openai_mock.requests[-1].headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


def test_a_rewritten_key_file_rotates_the_key_without_a_restart(keyed) -> None:
    envoy_pid = _envoy_pid(keyed)
    assert _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": CAROL_OLD})[0] == 200
    keyed.carol_file.write_text(CAROL_NEW + "\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": CAROL_NEW})[0] != 200:
        time.sleep(0.2)
    assert _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": CAROL_NEW})[0] == 200
    assert _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": CAROL_OLD})[0] == 401
    # SIGHUP re-reads too (and keeps serving)
    keyed.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": ALICE})[0] == 200
    assert _envoy_pid(keyed) == envoy_pid


def test_no_secret_appears_in_logs_metrics_records_or_rendered_files(keyed, anthropic_mock) -> None:
    # traffic first: good keys, a bad one, an error body
    _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": ALICE})
    _post(keyed, "/v1/messages", MESSAGE, {"x-api-key": ALICE + "-wrong"})
    _post(keyed, "/v1/messages", {"model": 5}, {"x-api-key": ALICE})
    _post(keyed, "/v1/messages", {**MESSAGE, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]},
          {"x-api-key": ALICE})
    places = {"gateway log": keyed.log(), "metrics": keyed.get("/metrics")[2].decode()}
    runtime = _runtime_dir(keyed)
    for path in [*runtime.rglob("*"), *(keyed.workdir / "records").rglob("*")]:
        if path.is_file() and path.suffix in (".yaml", ".json", ".jsonl", ".db", ".sqlite", ""):
            places[str(path)] = path.read_bytes().decode(errors="replace")
    assert any(p.endswith(envoy_config.GATE_FILE) for p in places)
    assert any("records" in p for p in places)
    assert "key:alice" in places["gateway log"]  # the key's name is logged, never the key
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {where}"


def test_workers_get_no_key_variables(keyed) -> None:
    workers = list(worker_pids(keyed.proc.pid))
    assert workers
    for pid in workers:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0] for e in environ}
        assert b"LR_TEST_OPENAI_KEY" not in names and b"LR_TEST_KEY_BOB" not in names


# -- exposure: loopback, Host, browsers ---------------------------------------------------------------


def test_a_host_that_does_not_name_the_gateway_is_refused_without_keys(gateway) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as Host."""
    status, _, body = gateway.get("/v1/messages", method="POST", body=json.dumps(MESSAGE).encode(),
                                  headers={**JSON, "host": f"rebind.attacker.example:{gateway.port}"})
    assert status == 403
    assert "access.allowed_hosts" in json.loads(body)["error"]["message"]
    assert gateway.get("/healthz", headers={"host": "10.0.0.7:8080"})[0] == 200  # probes by pod IP still work
    for host in (f"localhost:{gateway.port}", f"127.0.0.1:{gateway.port}", "localhost"):
        assert gateway.get("/v1/models", headers={"host": host, "x-api-key": "k"})[0] == 200


@pytest.mark.parametrize(("headers", "status"), [
    ({"origin": "https://evil.example"}, 403),
    ({"origin": "null"}, 403),
    ({"sec-fetch-site": "cross-site"}, 403),
    ({"content-type": "text/plain"}, 415),
    ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ({"origin": "http://localhost:3000"}, 200),
])
def test_requests_a_browser_could_forge_cross_site_are_refused(gateway, anthropic_mock, headers: dict,
                                                               status: int) -> None:
    got, _, body = gateway.get("/v1/messages", method="POST", body=json.dumps(MESSAGE).encode(),
                               headers={**JSON, "x-api-key": "sk-ant-user", **headers})
    assert got == status, body
    if status != 200:
        assert json.loads(body)["type"] == "error"  # Anthropic's envelope on an Anthropic path
        assert anthropic_mock.requests == []


@pytest.mark.parametrize("command", [["up"], ["render-envoy"], ["check"]])
def test_listening_beyond_loopback_without_keys_is_refused(tmp_path: Path, command: list[str]) -> None:
    cfg = tmp_path / "lunaroute.yaml"
    cfg.write_text(yaml.safe_dump({"listen": {"host": "0.0.0.0", "port": 18099}}))
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", *command, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "access.keys" in proc.stderr and "allow_anonymous" in proc.stderr


# -- helpers ---------------------------------------------------------------------------------------------


def _envoy_pid(gw: Gateway) -> int:
    return envoy_pid(gw.proc.pid)


def _runtime_dir(gw: Gateway) -> Path:
    args = children(gw.proc.pid)[_envoy_pid(gw)].split()
    return Path(args[args.index("-c") + 1]).parent


# -- bounded memory ------------------------------------------------------------------------------------


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_a_flood_of_30_mb_bodies_stays_within_the_memory_bound(tmp_path, anthropic_mock, openai_mock) -> None:
    import concurrent.futures
    import http.client

    heap, in_flight, body_cap = 128 * 1024 * 1024, 4, 32 * 1024 * 1024
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["limits"] = {"envoy_max_heap_bytes": heap, "max_concurrent_requests": in_flight,
                     "max_request_bytes": body_cap}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    try:
        envoy = _envoy_pid(gw)
        big = json.dumps({**MESSAGE, "messages": [{"role": "user", "content": "x" * (30 * 1024 * 1024)}]}).encode()

        def send(_: int) -> int | str:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
            try:
                conn.request("POST", "/v1/messages", body=big, headers={**JSON, "x-api-key": "sk-ant-u"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status in (413, 503):
                    json.loads(body)  # refusals are JSON errors
                return resp.status
            except (ConnectionError, http.client.HTTPException, OSError):
                return "reset"
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(send, range(16)))
        # refused at once beyond the cap (the client may see the reset while it is still sending)
        assert set(outcomes) <= {200, 413, 500, 503, "reset"}, outcomes
        assert outcomes.count(200) >= 1 and len([o for o in outcomes if o != 200]) >= 8, outcomes
        # Envoy survived, its memory stayed within the cap's bound (a few copies of each buffered body
        # in flight, plus its baseline; 16 uncapped bodies peak at ~1 GB), and it serves others
        assert _envoy_pid(gw) == envoy
        bound = in_flight * body_cap * 5 + 160 * 1024 * 1024
        assert _vm(envoy, "VmHWM") < bound, (_vm(envoy, "VmHWM"), bound)
        # while its heap is over 95 % new requests get a dialect 503 — or, when the HTTP/1 load shed point
        # closes the connection first, Envoy's own plain 500 — and it recovers once memory is released
        # (bounded: it must recover within the deadline; what is asserted is the order, 503s then a 200)
        deadline = time.monotonic() + 60
        while True:
            status, _, raw = gw.get("/v1/messages", method="POST", body=json.dumps(MESSAGE).encode(),
                                    headers={**JSON, "x-api-key": "sk-ant-u"})
            if status == 503:
                assert json.loads(raw)["error"]["type"] == "overloaded_error"
            elif status == 500:
                assert raw == b"Internal Server Error", raw  # the load shed point's answer, nothing else's
            else:
                break
            assert time.monotonic() < deadline, "the gateway did not recover after the flood"
            time.sleep(0.5)
        assert status == 200, (status, raw)
    finally:
        gw.stop()


# -- found in review -------------------------------------------------------------------------------


def test_a_provider_with_a_base_path_gets_its_requests_not_the_bypass_provider(tmp_path, anthropic_mock) -> None:
    """Python rewrites :path to the provider's (/v1beta/openai/...) and re-picks the route: the route
    must follow its cluster header, not the new path (which would otherwise fall to bypass)."""
    from tests.mock_providers import MockOpenAI

    gemini = MockOpenAI().start()
    try:
        cfg = {"default_provider": "anthropic", "bypass": {"enabled": True, "provider": "anthropic"},
               "providers": {"anthropic": {"type": "anthropic", "base_url": anthropic_mock.base_url,
                                           "auth": "passthrough"},
                             "gemini": {"type": "openai", "base_url": gemini.base_url + "/v1beta/openai",
                                        "auth": "passthrough"}}}
        gw = Gateway(tmp_path, cfg, workers=1).start()
        try:
            status, _, body = gw.get("/v1/chat/completions", method="POST", headers={
                "content-type": "application/json", "authorization": "Bearer user-gemini-key"},
                body=b'{"model":"g","messages":[{"role":"user","content":"[LUNAROUTE:gemini] hi"}]}')
            assert status == 200, body
        finally:
            gw.stop()
        assert [(r.path, r.headers.get("authorization")) for r in gemini.requests] == [
            ("/v1beta/openai/chat/completions", "Bearer user-gemini-key")]
        assert anthropic_mock.requests == []
    finally:
        gemini.stop()


def test_a_key_limited_to_some_models_cannot_use_apis_whose_model_is_not_checked(keyed, tmp_path,
                                                                                  anthropic_mock) -> None:
    # bob may use claude-* on anthropic only: bypassed APIs and forwarded-as-sent ones are closed to him
    status, _, body = keyed.get("/v1/messages/batches", method="POST", body=b'{"requests":[]}',
                                headers={**JSON, "x-api-key": BOB})
    assert status == 403 and "limited to some models" in json.loads(body)["error"]["message"]
    assert anthropic_mock.requests == []


def test_a_gateway_key_sent_in_two_headers_is_removed_from_both(keyed, anthropic_mock) -> None:
    status, _, body = _post(keyed, "/v1/messages", MESSAGE, {"x-lunaroute-key": ALICE, "x-api-key": ALICE})
    assert status == 200, body
    seen = anthropic_mock.requests[-1]
    assert all(ALICE not in v for v in seen.headers.values())
