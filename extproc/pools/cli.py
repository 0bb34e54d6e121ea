"""`lunaroute pools`: every pooled provider's keys as the gateways share them (the pools' store): each
key's state, until when it is out, its last refusal, today's requests and tokens, and the provider's
own rate-limit utilisation from its last `anthropic-ratelimit-*` / `x-ratelimit-*` headers."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config import Config
from .state import REVOKED_UNTIL, fingerprint
from .store import KeyState, PoolStore, open_pool_store


def _when(at: float, now: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f" ({int(at - now):+d}s)"


def utilisation(rate: dict[str, str]) -> str:
    """`requests 49/50 · tokens 10k/80k left`, from the provider's last rate-limit headers."""
    parts = []
    for what in ("requests", "tokens", "input-tokens", "output-tokens"):
        for limit_h, left_h in ((f"anthropic-ratelimit-{what}-limit", f"anthropic-ratelimit-{what}-remaining"),
                                (f"x-ratelimit-limit-{what}", f"x-ratelimit-remaining-{what}")):
            if limit_h in rate and left_h in rate:
                parts.append(f"{what} {rate[left_h]}/{rate[limit_h]} left")
    return " · ".join(parts) or "-"


def state_of(state: KeyState | None, usable_file: bool, now: float) -> str:
    if state is None:
        return "[green]ok[/green]"
    if state.revoked:
        return "[green]ok (secret changed)[/green]" if usable_file else "[red]revoked[/red]"
    return "[yellow]cooling[/yellow]" if state.until > now else "[green]ok[/green]"


def pools_table(cfg: Config, store: PoolStore, now: float) -> Table:
    keys = [(name, k) for name, p in cfg.providers.items() if p.pooled for k in p.pool]
    states = store.load([(n, k.name) for n, k in keys])
    usage = store.usage(time.strftime("%Y-%m-%d", time.gmtime(now)), [(n, k.name) for n, k in keys])
    rates = store.rates([(n, k.name) for n, k in keys])
    table = Table(title="credential pools", title_justify="left")
    for column in ("provider", "key", "weight", "state", "out until", "last refusal", "requests today",
                   "tokens today", "provider's limits (last seen)"):
        table.add_column(column, justify="right" if column in ("weight", "requests today", "tokens today") else "left")
    for name, key in keys:
        st = states.get((name, key.name))
        changed = bool(st and st.revoked and st.fingerprint not in ("", "env") and fingerprint(key) != st.fingerprint)
        out = "-" if st is None or (st.until <= now and not st.revoked) or changed else (
            "until its secret changes" if st.until >= REVOKED_UNTIL else _when(st.until, now))
        last = f"{st.last_status} at {_when(st.last_at, now)}" if st and st.last_status else "-"
        requests, tokens = usage.get((name, key.name), (0, 0))
        table.add_row(name, key.name, str(key.weight), state_of(st, changed, now), out, last, str(requests),
                      str(tokens), utilisation(rates.get((name, key.name)) or (st.rate if st else {})))
    return table


def cmd_pools(args: argparse.Namespace, load: Callable[[Any], Config]) -> int:
    cfg = load(args.config)
    console = Console()
    if not any(p.pooled for p in cfg.providers.values()):
        console.print("No provider has a pool of keys (providers.<name>.keys); see README: Credential pools.")
        return 0
    try:
        store = open_pool_store(cfg.budgets.store, cfg.budgets.timeout_ms / 1000)
        table = pools_table(cfg, store, time.time())
    except Exception as exc:  # noqa: BLE001 - any store failure is one line for the operator
        console.print(f"lunaroute: the pools' store {cfg.budgets.store!r} cannot be read ({type(exc).__name__}: "
                      f"{exc}); check budgets.store")
        return 1
    console.print(table)
    return 0


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
               ) -> argparse.ArgumentParser:
    return with_config(sub.add_parser("pools", help="the credential pools' keys: state, cooldowns, usage today"))
