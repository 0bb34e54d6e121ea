"""What the fast path sends is what Python would send: for every `fast/<provider><path>` route Envoy
gets, the request headers after the route's edits equal the headers after the request phase's own
reply for the same request (path, credentials, Anthropic's headers). Both come from
`prepare.as_sent_edits`; this holds the rendering of those edits into route config to it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc import config as config_mod
from extproc.envoy_config import render
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.wire import INTERNAL_PREFIX

CLIENT = {
    "/v1/messages": {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01",
                     "anthropic-beta": "context-1m", "accept-encoding": "gzip, br"},
    "/v1/chat/completions": {"authorization": "Bearer sk-client", "accept-encoding": "gzip"},
    "/v1/responses": {"authorization": "Bearer sk-client"},
    "/v1/messages/count_tokens": {"x-api-key": "sk-ant-client"},
    "/v1/responses/input_tokens": {"authorization": "Bearer sk-client"},
}


def _after_route(route: dict, headers: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in route.get("request_headers_to_remove", [])}
    for add in route.get("request_headers_to_add", []):
        key, value = add["header"]["key"], add["header"]["value"]
        if add.get("append_action") == "ADD_IF_ABSENT" and key in out:
            continue
        out[key] = value
    rewrite = route["route"].get("prefix_rewrite")
    if rewrite is not None:
        out[":path"] = rewrite + out[":path"][len(route["match"]["path"]):]
    return out


def _after_python(cfg: config_mod.Config, headers: dict[str, str], model: str) -> tuple[str, dict[str, str]]:
    ex = Exchange(Gateway(cfg), sealed=True)
    ex.on_request_headers(headers, False)
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "input": "hi"}
    reply = ex.on_request_body(orjson.dumps(body))
    assert reply.immediate is None and reply.body is None, "the same request must go as sent"
    out = {k: v for k, v in headers.items() if k not in reply.remove_headers}
    out.update(reply.set_headers)
    return ex.provider_name, out


def _fast_routes(cfg: config_mod.Config) -> list[dict]:
    boot = render(cfg)
    routes = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"]
    return [r for r in routes if r.get("name", "").startswith("fast/")]


def _internal(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith(INTERNAL_PREFIX) and k != "content-length"}


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["anthropic", "openai", "openai-responses"]),
       base=st.sampled_from(["https://a.example", "https://b.example/v1", "https://c.example/prefix/v1"]),
       keyed=st.booleans())
def test_every_fast_route_edits_the_request_as_the_python_path_does(kind: str, base: str, keyed: bool) -> None:
    provider = {"type": kind, "base_url": base, "model": None}
    if keyed:
        provider["api_key_env"] = "K"
    else:
        provider["auth"] = "passthrough"
    cfg = config_mod.parse({"providers": {"p": {k: v for k, v in provider.items() if v is not None}},
                            "default_provider": "p"}, env={"K": "k"})
    routes = _fast_routes(cfg)
    assert routes, "a same-dialect default provider has fast routes"
    for route in routes:
        path = route["match"]["path"]
        headers = {":method": "POST", ":path": path, "content-type": "application/json", **CLIENT[path]}
        name, python = _after_python(cfg, headers, "m-1")
        assert route["route"]["cluster"] == f"provider_{name}"
        fast = _internal(_after_route(route, headers))
        # the one difference on purpose: Envoy reads the fast path's usage, so it asks for plain bytes, as
        # the Python path does when it reads a response (envoy_config.metering)
        assert fast.pop("accept-encoding") == "identity"
        python = {k: v for k, v in _internal(python).items() if k != "accept-encoding"}
        assert fast == python, route["name"]


def test_the_oracle_sees_a_difference_when_there_is_one() -> None:
    cfg = config_mod.parse({"providers": {"p": {"type": "anthropic", "base_url": "https://a.example",
                                                "api_key_env": "K"}}, "default_provider": "p"}, env={"K": "k"})
    route = _fast_routes(cfg)[0]
    broken = {**route, "request_headers_to_remove": [h for h in route["request_headers_to_remove"]
                                                      if h != "x-api-key"]}
    headers = {":method": "POST", ":path": "/v1/messages", **CLIENT["/v1/messages"]}
    _, python = _after_python(cfg, headers, "m-1")
    with pytest.raises(AssertionError):
        assert _internal(_after_route(broken, headers)) == _internal(python)
