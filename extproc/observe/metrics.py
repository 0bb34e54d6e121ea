"""Prometheus metrics, shared across worker processes.

Workers are separate processes, so the supervisor points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before starting them and `/metrics` (answered by any worker) aggregates all of them.
Without that variable (a single in-process server, tests) the default registry is used.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Which path served a request: Envoy's fast path (learned from its access log, `extproc.metering`) or the
# workers (the ext_proc request phase).
FAST, PYTHON = "fast", "python"


class _Remembered:
    """`labels(...)` remembers its children: prometheus_client looks a child up under a lock and checks
    every value on each call, which costs more than the increment itself in multiprocess mode. The label
    values are bounded already (configured names, `ModelLabels`), so the memo is too."""

    def labels(self, *values: str) -> Any:  # noqa: ANN401 - the metric's own child type
        memo = self.__dict__.setdefault("_memo", {})
        child = memo.get(values)
        if child is None:
            child = memo[values] = super().labels(*values)  # type: ignore[misc]
        return child


class _Counter(_Remembered, Counter):
    pass


class _Histogram(_Remembered, Histogram):
    pass


class _ByPath(_Counter):
    """A counter whose last label is `path`, the Python path unless said otherwise: the request phase
    counts as it always has and the fast path's settlement says `path=FAST`."""

    def labels(self, *values: str, path: str = PYTHON) -> Any:  # noqa: ANN401 - a Counter child
        return super().labels(*values, path)


REQUESTS = _ByPath(
    "lunaroute_requests_total",
    "Every request the gateway routed, once: by route kind, provider ('gateway': answered locally) and path "
    "(fast: Envoy sent it straight to the provider; python: the workers decided).",
    ["route", "provider", "path"],
)
RESPONSES = _ByPath(
    "lunaroute_responses_total",
    "Responses the gateway saw, by route kind, provider, status and path: its own answers, translated "
    "responses, and every fast-path response. Python-path passthrough statuses are in Envoy's cluster stats.",
    ["route", "provider", "status", "path"],
)
PHASE_SECONDS = _Histogram(
    "lunaroute_extproc_phase_seconds",
    "Time the ext_proc server spent on one processing phase.",
    ["phase"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ROUTING = _Counter(
    "lunaroute_routing_decisions_total",
    "Routing decisions, by chosen provider and what decided it (marker, preferences, rule, default).",
    ["provider", "reason"],
)
UNKNOWN_MARKERS = _Counter(
    "lunaroute_unknown_markers_total",
    "[LUNAROUTE:name] markers naming no configured provider (routed by default).",
)
FALLBACKS = _Counter(
    "lunaroute_fallbacks_total",
    "Attempts Envoy moved to the next provider of a fallback chain, by failed and next provider.",
    ["from_provider", "to_provider"],
)
TRANSLATIONS = _Counter(
    "lunaroute_translations_total",
    "Requests translated between dialects, by client dialect and provider dialect.",
    ["client", "provider"],
)
WORKER_RESTARTS = _Counter(
    "lunaroute_worker_restarts_total",
    "ext_proc workers the supervisor restarted after they died.",
)
CLIENT_ERRORS = _Counter(
    "lunaroute_gateway_errors_total",
    "Errors the gateway answered itself, by kind (bad_json, bad_request, unsupported, internal...).",
    ["kind"],
)
TOKENS = _Counter(
    "lunaroute_tokens_total",
    "Tokens reported by providers in the responses the gateway read (translated, metered, fast path), by "
    "provider and direction.",
    ["provider", "direction"],
)
KEY_TOKENS = _Counter(
    "lunaroute_key_tokens_total",
    "Tokens by gateway key, provider, model and kind (input, output, cache_read, cache_write).",
    ["key", "provider", "model", "kind"],
)
KEY_COST = _Counter(
    "lunaroute_key_cost_usd_total",
    "What requests cost in USD by the pricing table, by gateway key, provider and model.",
    ["key", "provider", "model"],
)
RATE_LIMITED = _Counter(
    "lunaroute_rate_limited_total",
    "Requests Envoy refused because a tokens-per-minute window was full (requests-per-minute refusals are "
    "Envoy's local_ratelimit stats).",
    ["limit"],
)
RATE_LIMIT_STORE_ERRORS = _Counter(
    "lunaroute_rate_limit_store_errors_total",
    "Token-window store calls that failed (the limits failed open), by operation.",
    ["op"],
)
USAGE_LOG_ENTRIES = _Counter(
    "lunaroute_usage_log_entries_total",
    "Fast-path access-log entries the workers received, by outcome (settled; unknown_route: not one of "
    "this config's fast-path routes; unauthenticated: a stream refused, its peer not our Envoy).",
    ["outcome"],
)
RECORDS_DROPPED = _Counter(
    "lunaroute_records_dropped_total",
    "Session records not written, by why (queue_full: the writer fell behind; store_error).",
    ["reason"],
)
BUDGET_REJECTIONS = _Counter(
    "lunaroute_budget_rejections_total",
    "Requests refused with a 429 because a budget was spent, by budget name.",
    ["budget"],
)
BUDGET_STORE_ERRORS = _Counter(
    "lunaroute_budget_store_errors_total",
    "Budget store calls that failed or timed out (the request went on: fail open), by operation.",
    ["op"],
)
COST = _Counter(
    "lunaroute_cost_usd_total",
    "What requests cost in USD by the pricing table, by provider and model sent (responses the gateway read).",
    ["provider", "model"],
)
CACHE_TOKENS = _Counter(
    "lunaroute_cache_tokens_total",
    "Prompt-cache tokens providers reported, by provider and kind (read, write).",
    ["provider", "kind"],
)
OVERHEAD = _Histogram(
    "lunaroute_gateway_overhead_seconds",
    "Time the gateway itself spent on a request routed to a provider (its workers' processing, "
    "not the provider's), by provider.",
    ["provider"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
# OpenTelemetry GenAI semantic conventions, with their recommended buckets, so dashboards built for
# other gateways read these too. Observed for the responses the gateway reads (translated, recorded,
# budgeted or sampled) and for every fast-path response (its usage read by Envoy, `extproc.metering`).
GENAI_TOKENS = _Histogram(
    "gen_ai_client_token_usage",
    "Tokens used per request (OpenTelemetry gen_ai.client.token.usage), by token type (input, output).",
    ["gen_ai_token_type", "gen_ai_provider_name", "gen_ai_request_model"],
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
)
GENAI_DURATION = _Histogram(
    "gen_ai_server_request_duration",
    "Time from sending the request to the provider to the end of its response (gen_ai.server.request.duration).",
    ["gen_ai_provider_name", "gen_ai_request_model"],
    buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
)
GENAI_TTFT = _Histogram(
    "gen_ai_server_time_to_first_token",
    "Time from sending the request to the first bytes of the response body (gen_ai.server.time_to_first_token).",
    ["gen_ai_provider_name", "gen_ai_request_model"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
GENAI_TPOT = _Histogram(
    "gen_ai_server_time_per_output_token",
    "Time per output token after the first (gen_ai.server.time_per_output_token).",
    ["gen_ai_provider_name", "gen_ai_request_model"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5),
)


def observe_exchange(provider: str, model: str, usage: dict[str, int], cost: float | None, duration_s: float,
                     ttft_s: float | None, overhead_s: float | None, read: bool) -> None:
    """One finished request's metrics. `read`: the gateway read its response (else only the overhead
    is known). `overhead_s` None: not the request phase's settling (a chain's attempt, the fast path),
    whose overhead is counted where it was spent, or is none."""
    if overhead_s is not None:
        OVERHEAD.labels(provider).observe(overhead_s)
    if not read:
        return
    GENAI_DURATION.labels(provider, model).observe(duration_s)
    if ttft_s is not None:
        GENAI_TTFT.labels(provider, model).observe(ttft_s)
    if not usage:
        return
    GENAI_TOKENS.labels("input", provider, model).observe(usage.get("input", 0))
    GENAI_TOKENS.labels("output", provider, model).observe(usage.get("output", 0))
    output = usage.get("output", 0)
    if ttft_s is not None and output > 1:
        GENAI_TPOT.labels(provider, model).observe(max(duration_s - ttft_s, 0.0) / (output - 1))
    if cost:  # tokens and cache tokens are counted by responses.count_usage (fallback attempts too)
        COST.labels(provider, model).inc(cost)


def exposition() -> tuple[bytes, str]:
    """The text for `/metrics`, across all workers when running multi-process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


