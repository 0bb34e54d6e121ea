"""Per-key metrics of the credential pools, labelled by the key's *name* (never the key)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POOL_STARTS = Counter(
    "lunaroute_pool_starts_total",
    "Requests the workers started on a key of a pooled provider (every request per key, the fast path's "
    "too: lunaroute_pool_key_requests).",
    ["provider", "key"],
)
POOL_REFUSALS = Counter(
    "lunaroute_pool_refusals_total",
    "Answers that put a pool key out: 429/529 (cooling) or 401/403 (revoked), by provider, key and status.",
    ["provider", "key", "status"],
)
POOL_KEY_OUT = Gauge(
    "lunaroute_pool_key_out",
    "1 while a pool key is cooling or revoked (as every worker sees it), else 0.",
    ["provider", "key"],
    multiprocess_mode="livemin",
)
POOL_KEY_REQUESTS = Gauge(
    "lunaroute_pool_key_requests",
    "Requests sent with each pool key since Envoy started, refused attempts included (Envoy's counter of the "
    "key's cluster; the fast path's requests too).",
    ["provider", "key"],
    multiprocess_mode="max",
)
