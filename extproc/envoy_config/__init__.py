"""Renders Envoy's config from the gateway's config: the one source of truth for Envoy.

Envoy owns the networking: one cluster per provider (TLS with SNI, circuit breakers, outlier
detection, retries), the route table that sends intercepted API paths through the ext_proc filter
and everything else straight to the bypass provider with ext_proc disabled, and the provider
keys, which Envoy's credential injector reads from the environment or a file itself — so no key
ever passes through Python or appears in the rendered file.

One module per part of the bootstrap, each next to the Lua source it feeds (envoy/gate.lua,
envoy/fast.lua): `routes`, `clusters`, `ext_proc` (the filter), `local_replies` (Envoy's own error
answers), `gate`, `fast_path`, and `bootstrap`, which assembles them. The names Envoy and Python
share live in `extproc.wire`; the API paths and what each one is, in `extproc.endpoints`.
"""

from .bootstrap import for_validation, render, render_yaml
from .clusters import extproc_cluster, find_ca_file
from .common import envoy_source, lua_literal
from .ext_proc import ext_proc_filter, processing_mode, runtime_layers
from .fast_path import fast_settings, glob_to_lua
from .gate import GATE_FILE, gate_settings, gate_source, inline_gate, render_gate, write_gate
from .local_replies import local_reply_config

__all__ = ["GATE_FILE", "envoy_source", "ext_proc_filter", "extproc_cluster", "fast_settings", "find_ca_file",
           "for_validation", "gate_settings", "gate_source", "glob_to_lua", "inline_gate", "local_reply_config",
           "lua_literal", "processing_mode", "render", "render_gate", "render_yaml", "runtime_layers", "write_gate"]
