"""Every consumer of the endpoint table agrees on every path: the Python classifier, Envoy's rendered
route table, the gate (envoy/gate.lua, run in LuaJIT via lupa as Envoy runs it), and Envoy's local
replies. The expectations below are written out by hand, not derived from the table, so a row that
drifts fails here."""

from __future__ import annotations

import re
from typing import Any

import pytest
from lupa import luajit21

from extproc import config as config_mod
from extproc import envoy_config, paths
from extproc.endpoints import ENVELOPE, Kind, endpoint, refusal
from tests.envoy_local_replies import envelope_shape, local_reply_body

A, OA, R = "anthropic", "openai", "openai-responses"
# method, path, Python's kind, the client's dialect (None: by its headers), the error envelope, Envoy's route
CASES: list[tuple[str, str, Kind, str | None, str, str]] = [
    ("POST", "/v1/messages", Kind.MESSAGES, A, "anthropic", "intercept"),
    ("POST", "/v1/messages/count_tokens", Kind.COUNT_TOKENS, A, "anthropic", "intercept"),
    ("POST", "/v1/messages/batches", Kind.MESSAGES_OTHER, A, "anthropic", "intercept"),
    ("GET", "/v1/messages/batches/b1/results", Kind.MESSAGES_OTHER, A, "anthropic", "intercept"),
    ("POST", "/v1/chat/completions", Kind.CHAT, OA, "openai", "intercept"),
    ("GET", "/v1/chat/completions/c1", Kind.CHAT_OTHER, OA, "openai", "intercept"),
    ("POST", "/v1/responses", Kind.RESPONSES, R, "openai", "intercept"),
    ("POST", "/v1/responses/input_tokens", Kind.INPUT_TOKENS, R, "openai", "intercept"),
    ("GET", "/v1/responses/abc", Kind.RESPONSES_OTHER, R, "openai", "intercept"),
    ("POST", "/v1/responses/compact", Kind.RESPONSES_OTHER, R, "openai", "intercept"),
    ("GET", "/v1/models", Kind.MODELS, None, "both", "intercept"),
    ("HEAD", "/v1/models/gpt-5", Kind.MODELS, None, "both", "intercept"),
    ("DELETE", "/v1/models/ft:gpt-4o-mini:org:x", Kind.NOT_SERVED, None, "both", "method_not_allowed"),
    ("POST", "/v1/models", Kind.NOT_SERVED, None, "both", "method_not_allowed"),
    ("POST", "/v1/models/x/anything", Kind.NOT_SERVED, None, "both", "not_served"),
    ("GET", "/v1/models/x/anything", Kind.NOT_SERVED, None, "both", "not_served"),
    ("POST", "/v1/organizations/o/responses", Kind.BYPASS, None, "both", "bypass"),
    ("POST", "/v1/embeddings", Kind.BYPASS, None, "both", "bypass"),
    ("POST", "/v1/messagesx", Kind.BYPASS, None, "both", "bypass"),
    ("GET", "/healthz", Kind.HEALTHZ, None, "both", "healthz"),
    ("GET", "/readyz", Kind.READYZ, None, "both", "intercept"),
    ("GET", "/metrics", Kind.METRICS, None, "both", "intercept"),
    ("HEAD", "/", Kind.ROOT, None, "both", "root"),
    ("POST", "/", Kind.BYPASS, None, "both", "bypass"),
]

CONFIG = config_mod.parse({"providers": {
    "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
    "gemini": {"type": "openai", "base_url": "https://generativelanguage.googleapis.com/v1beta/openai",
               "api_key_env": "K"}},
    "bypass": {"provider": "anthropic"}}, env={})


def _routes() -> list[dict[str, Any]]:
    hcm = envoy_config.render(CONFIG)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def _string_matches(match: dict[str, Any], value: str) -> bool:
    if "exact" in match:
        return value == match["exact"]
    return re.fullmatch(match["safe_regex"]["regex"], value) is not None


def _route_for(routes: list[dict[str, Any]], method: str, path: str, headers: dict[str, str]) -> str:
    """The first route Envoy would pick for a request (the subset of route matching our table uses)."""
    request = {":method": method, **headers}
    for route in routes:
        m = route["match"]
        if "path" in m and path != m["path"]:
            continue
        if "prefix" in m and not path.startswith(m["prefix"]):
            continue
        if "path_separated_prefix" in m and not (path == m["path_separated_prefix"] or
                                                 path.startswith(m["path_separated_prefix"] + "/")):
            continue
        if "safe_regex" in m and re.fullmatch(m["safe_regex"]["regex"], path) is None:
            continue
        ok = True
        for h in m.get("headers", []):
            value = request.get(h["name"])
            hit = value is not None if h.get("present_match") else (
                value is not None and _string_matches(h["string_match"], value))
            ok = ok and hit != h.get("invert_match", False)
        if ok:
            return route["name"].split("/")[0]
    return "none"


@pytest.fixture(scope="module")
def gate_shape_of():
    settings = envoy_config.gate_settings(CONFIG, {})
    source = f"local CONFIG = {envoy_config.lua_literal(settings)}\n{envoy_config.gate_source()}\nreturn shape_of"
    return luajit21.LuaRuntime(unpack_returned_tuples=True).execute(source)


@pytest.mark.parametrize(("method", "path", "kind", "dialect", "shape", "route"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_every_consumer_of_the_endpoint_table_agrees(gate_shape_of, method: str, path: str, kind: Kind,
                                                     dialect: str | None, shape: str, route: str) -> None:
    # Python: the classifier and the client's dialect
    assert paths.classify(method, path) is kind
    assert endpoint(path).dialect == dialect
    if dialect is not None:
        assert paths.client_dialect(kind, {}) == dialect
        assert ENVELOPE[dialect] == shape
    # the gate's refusals, and Envoy's own error replies
    assert gate_shape_of(path) == shape
    if kind is not Kind.READYZ:  # a failed readiness probe answers in its own shape, for probes
        assert envelope_shape(local_reply_body(envoy_config.local_reply_config(CONFIG), 503, path)) == shape
    # Envoy's route table, for either vendor's client
    for headers in ({}, {"anthropic-version": "2023-06-01"}, {"authorization": "Bearer k"}):
        assert _route_for(_routes(), method, path, headers) == route, headers
    # and a refusal is answered with the same words whoever answers it
    assert (refusal(method, path) is not None) == (kind is Kind.NOT_SERVED)
    if route in ("not_served", "method_not_allowed"):
        assert refusal(method, path)[0] == {"not_served": 404, "method_not_allowed": 405}[route]


@pytest.mark.parametrize("headers", [{"anthropic-version": "2023-06-01"}, {"x-api-key": "k"}, {}])
def test_a_refusal_under_models_is_in_the_clients_dialect_by_its_headers(headers: dict[str, str]) -> None:
    import json

    routes = {r["name"]: r for r in _routes()}
    name = "method_not_allowed/v1/models" + ("/" + next(iter(headers)) if headers else "")
    assert _route_for(_routes(), "DELETE", "/v1/models/m", headers) == "method_not_allowed"
    body = json.loads(routes[name]["direct_response"]["body"]["inline_string"])
    python = paths.client_dialect(Kind.NOT_SERVED, headers)
    assert envelope_shape(body) == ENVELOPE[python]
    assert body["error"]["message"] == refusal("DELETE", "/v1/models/m")[1]


def test_the_provider_path_of_a_translated_request_keeps_its_apis_envelope() -> None:
    replies = envoy_config.local_reply_config(CONFIG)
    assert envelope_shape(local_reply_body(replies, 503, "/v1beta/openai/chat/completions")) == "openai"
    assert envelope_shape(local_reply_body(replies, 503, "/v1beta/openai/embeddings")) == "both"
