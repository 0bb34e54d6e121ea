"""What a request cost in USD, from the usage its provider reported.

Prices are per million tokens and looked up by model glob: the config's `pricing.models` first (so a
negotiated rate or a new model wins), then the defaults shipped here, then the provider's own
`pricing` (the one `sort: price` reads). A model found nowhere costs 0 and is marked unpriced, so a
missing price shows as such instead of as a cheap request.

Usage arrives as the gateway counts it (`dialects.usage`, the same in every dialect): `input` is every
prompt token — fresh ones, cache reads and cache writes; `cache_read` and `cache_write` say how many of
them the provider's cache read or wrote, each billed at its own rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


# Public list prices (USD / MTok) as of the end of 2026's first quarter; more specific globs first.
DEFAULT_PRICES: tuple[tuple[str, Price], ...] = (
    ("claude-opus-4-5*", Price(5.0, 25.0, 0.50, 6.25)),
    ("claude-opus-4*", Price(15.0, 75.0, 1.50, 18.75)),
    ("claude-sonnet-4*", Price(3.0, 15.0, 0.30, 3.75)),
    ("claude-3-7-sonnet*", Price(3.0, 15.0, 0.30, 3.75)),
    ("claude-haiku-4*", Price(1.0, 5.0, 0.10, 1.25)),
    ("claude-3-5-haiku*", Price(0.80, 4.0, 0.08, 1.0)),
    ("gpt-5*-nano*", Price(0.05, 0.40, 0.005)),
    ("gpt-5*-mini*", Price(0.25, 2.0, 0.025)),
    ("gpt-5*", Price(1.25, 10.0, 0.125)),
    ("gpt-4.1-nano*", Price(0.10, 0.40, 0.025)),
    ("gpt-4.1-mini*", Price(0.40, 1.60, 0.10)),
    ("gpt-4.1*", Price(2.0, 8.0, 0.50)),
    ("gpt-4o-mini*", Price(0.15, 0.60, 0.075)),
    ("gpt-4o*", Price(2.50, 10.0, 1.25)),
    ("o4-mini*", Price(1.10, 4.40, 0.275)),
    ("o3*", Price(2.0, 8.0, 0.50)),
)


class PriceTable:
    """Model → price, configured entries before the shipped ones."""

    def __init__(self, configured: dict[str, Price] | None = None,
                 providers: dict[str, Price] | None = None) -> None:
        self.entries = tuple((configured or {}).items()) + DEFAULT_PRICES
        self.providers = providers or {}
        self._by_model: dict[str, Price | None] = {}  # a model's glob lookup, remembered

    def price(self, model: str | None, provider: str = "") -> Price | None:
        if model:
            if model in self._by_model:
                found = self._by_model[model]
            else:
                found = next((price for glob, price in self.entries if fnmatchcase(model, glob)), None)
                if len(self._by_model) >= 1024:  # client-chosen names: the memo stays bounded
                    self._by_model.clear()
                self._by_model[model] = found
            if found is not None:
                return found
        return self.providers.get(provider)

    def cost(self, model: str | None, usage: dict[str, int], provider: str = "") -> float | None:
        """USD for `usage`, or None when neither the model nor the provider has a price."""
        price = self.price(model, provider)
        if price is None:
            return None
        cache_read, cache_write = usage.get("cache_read", 0), usage.get("cache_write", 0)
        fresh = max(usage.get("input", 0) - cache_read - cache_write, 0)
        return round((fresh * price.input + cache_read * price.cache_read + cache_write * price.cache_write
                      + usage.get("output", 0) * price.output) / 1e6, 8)
