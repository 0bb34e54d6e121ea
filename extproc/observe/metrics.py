"""Prometheus metrics, shared across worker processes.

Workers are separate processes, so the supervisor points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before starting them and `/metrics` (answered by any worker) aggregates all of them.
Without that variable (a single in-process server, tests) the default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "lunaroute_requests_total",
    "Requests the ext_proc server handled, by route kind and the provider chosen ('gateway': answered locally).",
    ["route", "provider"],
)
RESPONSES = Counter(
    "lunaroute_responses_total",
    "Responses the gateway saw, by route kind, provider and status: its own answers and translated responses. "
    "Passthrough responses skip Python; their status codes are in Envoy's per-cluster stats.",
    ["route", "provider", "status"],
)
PHASE_SECONDS = Histogram(
    "lunaroute_extproc_phase_seconds",
    "Time the ext_proc server spent on one processing phase.",
    ["phase"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ROUTING = Counter(
    "lunaroute_routing_decisions_total",
    "Routing decisions, by chosen provider and what decided it (marker, preferences, rule, default).",
    ["provider", "reason"],
)
UNKNOWN_MARKERS = Counter(
    "lunaroute_unknown_markers_total",
    "[LUNAROUTE:name] markers naming no configured provider (routed by default).",
)
FALLBACKS = Counter(
    "lunaroute_fallbacks_total",
    "Attempts Envoy moved to the next provider of a fallback chain, by failed and next provider.",
    ["from_provider", "to_provider"],
)
TRANSLATIONS = Counter(
    "lunaroute_translations_total",
    "Requests translated between dialects, by client dialect and provider dialect.",
    ["client", "provider"],
)
WORKER_RESTARTS = Counter(
    "lunaroute_worker_restarts_total",
    "ext_proc workers the supervisor restarted after they died.",
)
CLIENT_ERRORS = Counter(
    "lunaroute_gateway_errors_total",
    "Errors the gateway answered itself, by kind (bad_json, bad_request, unsupported, internal...).",
    ["kind"],
)
TOKENS = Counter(
    "lunaroute_tokens_total",
    "Tokens reported by providers in translated responses, by provider and direction.",
    ["provider", "direction"],
)
RECORDS_DROPPED = Counter(
    "lunaroute_records_dropped_total",
    "Session records not written, by why (queue_full: the writer fell behind; store_error).",
    ["reason"],
)
BUDGET_REJECTIONS = Counter(
    "lunaroute_budget_rejections_total",
    "Requests refused with a 429 because a budget was spent, by budget name.",
    ["budget"],
)
BUDGET_STORE_ERRORS = Counter(
    "lunaroute_budget_store_errors_total",
    "Budget store calls that failed or timed out (the request went on: fail open), by operation.",
    ["op"],
)
COST = Counter(
    "lunaroute_cost_usd_total",
    "What requests cost in USD by the pricing table, by provider and model sent.",
    ["provider", "model"],
)


def exposition() -> tuple[bytes, str]:
    """The text for `/metrics`, across all workers when running multi-process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
