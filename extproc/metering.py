"""Fast-path requests, settled after the fact from Envoy's access log.

The fast path never reaches Python while a request is in flight. Envoy reads its response's usage
(`envoy_config.metering`) and, after the response, its `http_grpc` access logger streams one entry per
fast-path request to the AccessLogService every worker serves (this module), in batches. Each entry is
settled through the ledger (`Ledger.after_the_fact`): counted once with `path="fast"`, tokens, cost and
the GenAI histograms by provider and model, per-key tokens and cost, budgets charged. Subscribers
(`UsageReceiver.subscribe`) see every entry too, e.g. to learn a provider's 429s and their reset headers.

Nothing in an entry picks anything: the provider comes from this config's own route names, the model
reaches metrics only through `ModelLabels`, and usage counts are clamped to non-negative integers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2

from ._proto import access_log_pb2 as pb
from ._proto import access_log_pb2_grpc as pb_grpc
from .config import Config
from .dialects import DIALECTS
from .dialects.base import Dialect
from .envoy_config.fast_path import fast_settings
from .gateway import Gateway
from .ledger import Settlement
from .observe import metrics
from .paths import classify
from .spent import SpentWatch
from .wire import (
    BODY_METADATA,
    CLIENT_KEY,
    FAST_ROUTE_PREFIX,
    METADATA_NAMESPACE,
    MODEL_KEY,
    REFUSED_KEY,
    USAGE_METADATA,
)
from .wire import TPM_REFUSAL as TPM

log = logging.getLogger("lunaroute")

MAX_TOKENS = 1 << 40  # a usage count above this is not a provider's


@dataclass(frozen=True, slots=True)
class FastEntry:
    """One fast-path request as Envoy logged it."""

    provider: str
    route: str  # the route kind (`paths.Kind` value), as the Python path counts it
    key: str  # the gateway key's name ("" without keys)
    model: str | None  # the model the body named (sent unchanged)
    status: int
    usage: dict[str, int]
    duration_s: float
    ttft_s: float | None
    cluster: str  # the upstream cluster that answered ("" when Envoy answered itself)
    refused: str = ""  # the spent budget Envoy refused the request for (envoy/spent.lua)
    headers: dict[str, str] = field(default_factory=dict)  # the provider's rate-limit response headers


def fast_routes(cfg: Config) -> dict[str, tuple[str, str, Dialect]]:
    """This config's fast-path route names → (provider, route kind, the provider's dialect)."""
    out = {}
    for path, entry in fast_settings(cfg)["paths"].items():
        for target in [*(r.get("target") for r in entry["rules"]), entry["default"]]:
            if target:
                out[f"{FAST_ROUTE_PREFIX}{target}{path}"] = (target, classify("POST", path).value,
                                                              cfg.providers[target].type)
    return out


def _seconds(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


def _raw_usage(fields: dict[str, object]) -> dict[str, object]:
    """The usage fields Envoy lifted, back in the shape the provider sent (its dialect's `usage` reads it)."""
    counts = {k: min(max(int(v), 0), MAX_TOKENS) for k, v in fields.items()
              if isinstance(v, int | float) and not isinstance(v, bool)}
    raw: dict[str, object] = {k: v for k, v in counts.items() if k not in ("cached_tokens", "cache_write_tokens")}
    details = {k: counts[k] for k in ("cached_tokens", "cache_write_tokens") if k in counts}
    if details:
        raw["prompt_tokens_details" if "prompt_tokens" in counts else "input_tokens_details"] = details
    return raw


def _value(meta: Any, namespace: str, key: str) -> object:  # noqa: ANN401 - a protobuf map
    struct = meta.get(namespace)
    return struct[key] if struct is not None and key in struct else None


def read_entry(raw: pb.HTTPAccessLogEntry, routes: dict[str, tuple[str, str, Dialect]]) -> FastEntry | None:
    """A FastEntry, or None when the route is not one of this config's fast-path routes."""
    common = raw.common_properties
    target = routes.get(common.route_name)
    if target is None:
        return None
    meta = common.metadata.filter_metadata
    lifted = meta.get(USAGE_METADATA)
    raw_usage = _raw_usage({k: v for k, v in lifted.items()}) if lifted is not None else {}
    usage = DIALECTS[target[2]].usage(raw_usage) if raw_usage else {}  # nothing lifted: nothing reported
    model, key = _value(meta, BODY_METADATA, MODEL_KEY), _value(meta, METADATA_NAMESPACE, CLIENT_KEY)
    refused = _value(meta, METADATA_NAMESPACE, REFUSED_KEY)
    ttft = None
    if common.HasField("time_to_first_upstream_rx_byte") and common.HasField("time_to_last_upstream_tx_byte"):
        ttft = max(_seconds(common.time_to_first_upstream_rx_byte) - _seconds(common.time_to_last_upstream_tx_byte), 0)
    sent = _seconds(common.time_to_last_upstream_tx_byte) if common.HasField("time_to_last_upstream_tx_byte") else 0
    done = (_seconds(common.time_to_last_upstream_rx_byte) if common.HasField("time_to_last_upstream_rx_byte")
            else _seconds(common.duration))
    return FastEntry(
        provider=target[0], route=target[1], key=key if isinstance(key, str) else "",
        model=model[:256] if isinstance(model, str) else None,
        status=raw.response.response_code.value, usage=usage, duration_s=max(done - sent, 0.0), ttft_s=ttft,
        cluster=common.upstream_cluster, headers=dict(raw.response.response_headers),
        refused=refused if isinstance(refused, str) else "")


class UsageReceiver(pb_grpc.AccessLogServiceServicer):
    """The AccessLogService of a worker: settles fast-path entries through the ledger."""

    def __init__(self, gateway: Gateway, spent: SpentWatch | None = None,
                 authenticated: Callable[[Any], bool] = lambda _context: True) -> None:
        self.gateway = gateway
        self.authenticated = authenticated  # is the stream's peer our Envoy (see server.stream_authenticated)
        self.routes = fast_routes(gateway.cfg)
        self.spent = spent
        self.refusals = frozenset([TPM, *(lim.name for lim in gateway.cfg.budgets.all_limits())])
        self._subscribers: list[Callable[[FastEntry], None]] = []

    def subscribe(self, callback: Callable[[FastEntry], None]) -> None:
        """`callback(entry)` for every fast-path entry, after it is settled (on the event loop: keep it
        short). A callback that raises is logged and kept."""
        self._subscribers.append(callback)

    def settle(self, entry: FastEntry) -> None:
        s = Settlement(entry.provider, entry.model, entry.usage, entry.status, entry.duration_s, entry.ttft_s)
        refused = entry.refused if entry.refused in self.refusals else ""
        self.gateway.ledger.after_the_fact(s, entry.route, entry.key, refused=refused)
        if refused:
            return  # Envoy answered: nothing used, nothing for subscribers
        budgets, windows = self.gateway.budgets, self.gateway.ledger.windows
        if self.spent is not None and (
                (budgets is not None and budgets.draws(entry.key or None, entry.provider, None))
                or (windows is not None and windows.matching(entry.key, entry.provider, entry.model))):
            self.spent.poke()  # a budget or a window may be spent now: tell Envoy soon
        for callback in self._subscribers:
            try:
                callback(entry)
            except Exception:  # noqa: BLE001 - a subscriber must not stop the settling
                log.exception("a usage subscriber failed")

    def receive(self, message: pb.StreamAccessLogsMessage) -> None:
        for raw in message.http_logs.log_entry:
            entry = read_entry(raw, self.routes)
            if entry is None:
                metrics.USAGE_LOG_ENTRIES.labels("unknown_route").inc()
                continue
            metrics.USAGE_LOG_ENTRIES.labels("settled").inc()
            self.settle(entry)

    async def StreamAccessLogs(self, request_iterator, context):  # noqa: N802 - gRPC method name
        if not self.authenticated(context):
            # only our Envoy may say what a request used: anyone else could spend others' budgets
            metrics.USAGE_LOG_ENTRIES.labels("unauthenticated").inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "access-log entries are taken from the "
                                "gateway's own Envoy only (a Unix socket or a mutual-TLS peer)")
        async for message in request_iterator:
            try:
                self.receive(message)
            except Exception:  # noqa: BLE001 - one bad batch must not end Envoy's stream
                log.exception("could not settle a batch of fast-path entries")
        return pb.StreamAccessLogsResponse()
