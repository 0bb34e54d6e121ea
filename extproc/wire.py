"""The contract between Envoy and the Python workers: every name both sides use, in one place.

Envoy's config (rendered by `envoy_config`), its Lua filters (envoy/gate.lua, envoy/fast.lua, which get
these names rendered into their settings) and the request pipeline (`exchange`, `attempts`, `server`)
talk through request headers, dynamic metadata, route and endpoint metadata, and the gRPC initial
metadata of the ext_proc streams. A name spelled differently on one side fails silently (a header
nobody reads), so each is written once, here; tests/test_wire.py holds the Lua sources to these names.

Every `x-lunaroute-*` request header is internal: the gate removes whatever a client sent before any
filter reads it, and routes remove them again before a request leaves Envoy (`GATE_HEADERS`, the
pipeline's own removals). The one exception, `KEY_HEADER`, is read by the gate and then removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .dialects.base import Dialect

INTERNAL_PREFIX = "x-lunaroute-"  # request headers only the gateway itself may set

# -- request headers -------------------------------------------------------------------------------

# A client's gateway key, beside its own provider credentials (read and removed by the gate).
KEY_HEADER = "x-lunaroute-key"
# The provider cluster the workers picked; the `routed` route and the cluster matcher follow it.
CLUSTER_HEADER = "x-lunaroute-cluster"
# Attempt N+1 of a fallback chain goes to the cluster named in `x-lunaroute-fallback-N`.
FALLBACK_HEADER = "x-lunaroute-fallback-{}"
# Present only on requests with a fallback chain: switches the per-attempt (upstream) ext_proc on.
CHAIN_HEADER = "x-lunaroute-chain"
# How many providers a chain has: selects the route whose retry budget fits it.
ATTEMPTS_HEADER = "x-lunaroute-attempts"
# Set by the gate after it removed every client-sent internal header: who is calling (a gateway key's
# name) and what that key may use.
CLIENT_HEADER = "x-lunaroute-client"
SCOPE_HEADER = "x-lunaroute-scope"
# The client's network address, written by the gate when recording is on (bypassed routes never get it).
PEER_HEADER = "x-lunaroute-peer"
# The fast path (envoy/fast.lua) names the provider here; only the `fast/…` routes read it.
FAST_HEADER = "x-lunaroute-fast"
# Set by the gate on requests the fast path may decide: only these have their body parsed for it.
CANDIDATE_HEADER = "x-lunaroute-candidate"
# The pool key pools.lua picked for a fast-path request (the `fast/…` routes of a pooled provider read it).
POOL_HEADER = "x-lunaroute-pool"
# Envoy's count of a request's attempts (the route's `include_request_attempt_count`).
ATTEMPT_COUNT_HEADER = "x-envoy-attempt-count"

# Internal headers Envoy sets for its own filters and routes; removed before a request leaves it.
GATE_HEADERS = [CLUSTER_HEADER, CLIENT_HEADER, SCOPE_HEADER, FAST_HEADER, CANDIDATE_HEADER, POOL_HEADER]

# -- response headers ------------------------------------------------------------------------------

# Which provider answered (from the endpoint's metadata; empty for the gateway's own answers).
PROVIDER_HEADER = "x-lunaroute-provider"
# Which key of a pooled provider answered (its name, from the endpoint's metadata; never the key).
POOL_KEY_HEADER = "x-lunaroute-pool-key"

# -- metadata --------------------------------------------------------------------------------------

# Dynamic metadata the gate writes (the key's name for the access log, its provider allow-list for the
# fast path), and the provider clusters' endpoint metadata naming their provider.
METADATA_NAMESPACE = "lunaroute"
CLIENT_KEY = "client"
PROVIDERS_KEY = "providers"
PROVIDER_KEY = "provider"
POOL_KEY = "pool_key"  # endpoint metadata of a pooled provider's clusters: the key's name
REFUSED_KEY = "refused"  # envoy/spent.lua: the spent budget it refused a request for (for the metrics)
TPM_REFUSAL = "tpm"  # ... or this, for a full tokens-per-minute window
# Route metadata (under GATE_FILTER) of a bypassed route to a provider of another vendor than Anthropic
# that takes the client's credentials: the gate removes Anthropic's (sk-ant- keys, Claude logins) there.
DROP_ANTHROPIC_CREDENTIALS_KEY = "drop_anthropic_credentials"
# json_to_metadata lifts the body's `model` (or `error` for a body that is not JSON) into this namespace.
BODY_METADATA = "lunaroute.body"
MODEL_KEY = "model"
ERROR_KEY = "error"
# … and, for pools.lua's conversation id, `metadata.user_id` and `prompt_cache_key`.
USER_ID_KEY = "user_id"
CACHE_KEY_KEY = "prompt_cache_key"

# The fast path's response usage: json_to_metadata (JSON bodies) and sse_to_metadata (streams) write the
# provider's raw usage fields here, under their own names (USAGE_FIELDS); the access log ships them.
USAGE_METADATA = "lunaroute.usage"
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens")

# gRPC initial metadata of our own bootstrap's ext_proc streams. GATE_METADATA says the gate ran, so
# internal headers are Envoy's (a mesh's proxies, whose filter chain is not ours, do not send it);
# ATTEMPT_PROVIDER_METADATA names the provider cluster of a per-attempt stream.
GATE_METADATA = "x-lunaroute-gate"
GATE_SEALED = "sealed"
ATTEMPT_PROVIDER_METADATA = "x-lunaroute-attempt-provider"

# -- filters and clusters --------------------------------------------------------------------------

GATE_FILTER = "lunaroute.gate"  # also the route-metadata namespace the gate reads (`provider`)
FAST_FILTER = "lunaroute.fast"
POOLS_FILTER = "lunaroute.pools"
ATTEMPT_FILTER = "lunaroute.attempt_ext_proc"
EXTPROC_FILTER = "envoy.filters.http.ext_proc"
JSON_TO_METADATA = "envoy.filters.http.json_to_metadata"
EXTPROC_CLUSTER = "lunaroute_extproc"
USAGE_JSON_FILTER = "lunaroute.usage_json"  # json_to_metadata on fast-path responses
USAGE_SSE_FILTER = "lunaroute.usage_sse"  # sse_to_metadata on fast-path streams
SPENT_FILTER = "lunaroute.spent"  # refuses fast-path requests whose budget is spent (envoy/spent.lua)
USAGE_LOG = "lunaroute_usage"  # the http_grpc access log's name: fast-path entries for the workers
FAST_ROUTE_PREFIX = "fast/"  # the fast path's route names: fast/{provider}{path}


def cluster_name(provider: str) -> str:
    """The Envoy cluster of a configured provider: what the workers write in `CLUSTER_HEADER`."""
    return f"provider_{provider}"


def pool_cluster(provider: str, keys: list[str], key: str) -> str:
    """The cluster a request to a pooled provider starts on when it starts on `key` (of `keys`, in
    config order): the first key's is the provider's own cluster, so whatever names the provider
    (bypass, fallback chains) still walks its pool."""
    return cluster_name(provider) if key == keys[0] else f"{cluster_name(provider)}@{key}"


def lua_names() -> dict[str, str]:
    """The names the Lua filters use, rendered into their settings so the Lua holds no copy."""
    return {"internal_prefix": INTERNAL_PREFIX, "key": KEY_HEADER, "client": CLIENT_HEADER,
            "scope": SCOPE_HEADER, "peer": PEER_HEADER, "fast": FAST_HEADER, "candidate": CANDIDATE_HEADER,
            "namespace": METADATA_NAMESPACE, "client_key": CLIENT_KEY, "providers_key": PROVIDERS_KEY,
            "provider_key": PROVIDER_KEY, "drop_anthropic_key": DROP_ANTHROPIC_CREDENTIALS_KEY,
            "body_namespace": BODY_METADATA, "model_key": MODEL_KEY,
            "error_key": ERROR_KEY, "refused_key": REFUSED_KEY, "pool": POOL_HEADER, "user_id_key": USER_ID_KEY,
            "cache_key_key": CACHE_KEY_KEY}


# -- the fallback chain, carried in CHAIN_HEADER from the request phase to every attempt -------------


@dataclass(frozen=True, slots=True)
class Chain:
    """What the request phase tells every attempt (in a header only it can write: the gate removes a
    client's). `metered`: the request phase reads the response that reaches the client, so it settles
    the usage (see `ledger`); `reserved`: the provider its budget reservation was made on."""

    client: Dialect
    path: str
    query: str
    providers: tuple[str, ...]
    models: dict[str, str] = field(default_factory=dict)  # per-provider model override
    stash: dict[str, str] = field(default_factory=dict)  # client headers an attempt may need back
    model: str | None = None  # the model the request names (what an attempt without an override sends)
    key: str = ""
    session: str | None = None
    metered: bool = False
    reserved: str = ""


def encode_chain(chain: Chain) -> str:
    return orjson.dumps({"c": chain.client, "p": chain.path, "q": chain.query, "n": chain.providers,
                         "m": chain.models, "s": chain.stash, "k": chain.key, "e": chain.session,
                         "r": chain.metered, "b": chain.reserved, "o": chain.model}).decode()


def decode_chain(value: str) -> Chain:
    raw = orjson.loads(value)
    return Chain(client=raw["c"], path=raw["p"], query=raw["q"], providers=tuple(raw["n"]),
                 models=raw.get("m") or {}, stash=raw.get("s") or {}, key=raw.get("k") or "",
                 session=raw.get("e"), metered=bool(raw.get("r")), reserved=raw.get("b") or "",
                 model=raw.get("o"))
