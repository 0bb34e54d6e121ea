"""Credential pools: several keys per provider, each conversation kept on one key, 429s absorbed.

Envoy holds and injects every key (`envoy_config.pools`); Python never reads one. What Python owns:
which key a conversation starts on (`pick`, the same function Envoy's pools.lua runs), what a 429,
529, 401 or 403 teaches about a key (`cooldown`, a pure function), where that knowledge is shared
(`store`: the budgets' SQLite file or Redis), and how it reaches Envoy without a restart (`state`
writes the pool file Envoy watches).
"""
