"""The Grafana dashboard under deploy/grafana queries only metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Histogram

from extproc.observe import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "lunaroute-dashboard.json"


def _exported() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            names.update(value._name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_panel_queries_metrics_the_gateway_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported()
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b((?:lunaroute|gen_ai)_[a-z_]+)\[", target["expr"])}  # a metric, not a label
    assert queried and queried <= exported, queried - exported
    assert {"gen_ai_client_token_usage_sum", "gen_ai_server_time_to_first_token_bucket",
            "lunaroute_gateway_overhead_seconds_bucket", "lunaroute_cost_usd_total"} <= queried
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
