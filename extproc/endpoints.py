"""The API paths the gateway knows: one row each, and everything Envoy and Python derive from them.

Which dialect a path's client speaks, whether its body must be JSON and is routed by the workers,
whether the fast path may decide it, whether it can carry a fallback chain, which error envelope a
refusal there gets, and which methods are served: all of that is read from `ENDPOINTS`, by the Python
classifier (`paths`), the route table, Envoy's local replies and the gate (rendered into its
settings). Before this table each of those kept its own list, and three of them disagreed about
`/v1/responses/{id}` and about paths that merely end in `/responses`.

A row's `path` is exact; `/*` at its end stands for every deeper path (`/v1/messages/batches/…`) and
`/{id}` for exactly one more segment (`/v1/models/gpt-5`). Paths no row covers are bypassed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from .dialects.base import Dialect

# The error envelope a path's clients read: a dialect's own, or, where either vendor's SDK may be
# calling, Anthropic's envelope carrying OpenAI's fields too (`answers.error_bodies`).
Shape = Literal["anthropic", "openai", "both"]
ENVELOPE: dict[str, Shape] = {"anthropic": "anthropic", "openai": "openai", "openai-responses": "openai"}
READ = frozenset({"GET", "HEAD"})
# Where either vendor's SDK may call (/v1/models), a request with one of these headers is Anthropic's.
ANTHROPIC_SIGNS = ("anthropic-version", "x-api-key")


class Kind(Enum):
    MESSAGES = "messages"  # POST /v1/messages (Anthropic)
    COUNT_TOKENS = "count_tokens"  # POST /v1/messages/count_tokens (Anthropic)
    MESSAGES_OTHER = "messages_other"  # /v1/messages/batches… (Anthropic-only APIs)
    CHAT = "chat"  # POST /v1/chat/completions (OpenAI)
    CHAT_OTHER = "chat_other"  # /v1/chat/completions/{id}… (OpenAI's stored completions)
    RESPONSES = "responses"  # POST /v1/responses (OpenAI Responses)
    INPUT_TOKENS = "input_tokens"  # POST /v1/responses/input_tokens (OpenAI Responses)
    RESPONSES_OTHER = "responses_other"  # /v1/responses/{id}… (stored responses: Responses providers only)
    MODELS = "models"  # GET|HEAD /v1/models[/{id}] (either dialect)
    # Under an intercepted API but never forwarded: another method or a deeper path of /v1/models
    # (OpenAI's DELETE /v1/models/{fine-tune} would spend the provider's key). A 404 or 405.
    NOT_SERVED = "not_served"
    HEALTHZ = "healthz"
    READYZ = "readyz"
    METRICS = "metrics"
    ROOT = "root"  # GET|HEAD /: Claude Code's start-up probe
    BYPASS = "bypass"


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    kind: Kind
    dialect: Dialect | None  # None: either vendor's client (by its headers, see `paths.client_dialect`)
    json_body: bool = False  # a body sent here must be JSON (the gate refuses others: browsers' forms)
    routed: bool = False  # the workers read the body and pick the provider
    fast: bool = False  # the fast path (envoy/fast.lua) may decide it without the workers
    chain: bool = False  # a fallback chain may carry it (its own retry routes)
    methods: frozenset[str] | None = None  # None: any method
    open: bool = False  # answered without a gateway key (probes, metrics)
    intercepted: bool = True  # Envoy sends it through the workers (else Envoy answers it itself)

    @property
    def shape(self) -> Shape:
        return ENVELOPE[self.dialect] if self.dialect else "both"

    @property
    def family(self) -> str:
        """The path without its `/*` or `/{id}` tail."""
        return self.path.removesuffix("/*").removesuffix("/{id}")


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/v1/messages", Kind.MESSAGES, "anthropic", json_body=True, routed=True, fast=True, chain=True),
    Endpoint("/v1/messages/count_tokens", Kind.COUNT_TOKENS, "anthropic", json_body=True, routed=True, fast=True),
    Endpoint("/v1/messages/*", Kind.MESSAGES_OTHER, "anthropic", json_body=True),
    Endpoint("/v1/chat/completions", Kind.CHAT, "openai", json_body=True, routed=True, fast=True, chain=True),
    Endpoint("/v1/chat/completions/*", Kind.CHAT_OTHER, "openai", json_body=True),
    Endpoint("/v1/responses", Kind.RESPONSES, "openai-responses", json_body=True, routed=True, fast=True,
             chain=True),
    Endpoint("/v1/responses/input_tokens", Kind.INPUT_TOKENS, "openai-responses", json_body=True, routed=True,
             fast=True),
    Endpoint("/v1/responses/*", Kind.RESPONSES_OTHER, "openai-responses", json_body=True),
    Endpoint("/v1/models", Kind.MODELS, None, methods=READ),
    Endpoint("/v1/models/{id}", Kind.MODELS, None, methods=READ),
    Endpoint("/healthz", Kind.HEALTHZ, None, open=True, intercepted=False),
    Endpoint("/readyz", Kind.READYZ, None, open=True),
    Endpoint("/metrics", Kind.METRICS, None, open=True),
    Endpoint("/", Kind.ROOT, None, methods=READ, open=True, intercepted=False),
)

_EXACT = {e.path: e for e in ENDPOINTS if not e.path.endswith(("/*", "/{id}"))}
_ONE_SEGMENT = {e.family: e for e in ENDPOINTS if e.path.endswith("/{id}")}
_DEEPER = {e.family: e for e in ENDPOINTS if e.path.endswith("/*")}
# Below a `/{id}` row: never forwarded.
_BELOW_ONE = {family: Endpoint(family + "/{id}/*", Kind.NOT_SERVED, e.dialect, methods=e.methods)
              for family, e in _ONE_SEGMENT.items()}
BYPASS = Endpoint("/*", Kind.BYPASS, None)


def endpoint(path: str) -> Endpoint:
    """The row of a path (without its query string and trailing slash, see `paths.split_path`);
    `BYPASS` for paths no row covers, and `NOT_SERVED`'s for deeper paths of a `/{id}` row."""
    row = _EXACT.get(path)
    if row is not None:
        return row
    for family, row in _ONE_SEGMENT.items():
        if path.startswith(family + "/"):
            return row if "/" not in path[len(family) + 1:] else _BELOW_ONE[family]
    best = max((f for f in _DEEPER if path.startswith(f + "/")), key=len, default=None)
    return _DEEPER[best] if best is not None else BYPASS


def refusal(method: str, path: str) -> tuple[int, str] | None:
    """The 404/405 (status, message) for a method or path an intercepted API never forwards; the same
    words whether Envoy (its routes) or the workers answer."""
    row = endpoint(path)
    if row.kind is Kind.NOT_SERVED:
        return 404, f"this gateway serves {row.family} and {row.family}/{{id}} only; deeper paths are not forwarded"
    if row.methods is not None and method not in row.methods and row.intercepted:
        return 405, f"{row.family} accepts {' and '.join(sorted(row.methods))} only"
    return None


def _roots(paths: list[str]) -> tuple[str, ...]:
    """The paths not under another one of them, in order: each stands for itself and everything below."""
    return tuple(dict.fromkeys(p for p in paths if not any(p.startswith(q + "/") for q in paths)))


# What the renderer and the gate read. Families are matched as prefixes (the path, or it plus "/…").
OPEN_PATHS = tuple(e.path for e in ENDPOINTS if e.open)
JSON_PATHS = _roots([e.family for e in ENDPOINTS if e.json_body])
FAST_PATHS: dict[str, Dialect] = {e.path: e.dialect for e in ENDPOINTS if e.fast and e.dialect}
CHAIN_PREFIXES = _roots([e.family for e in ENDPOINTS if e.chain])
# Intercepted paths: API families (every deeper path too) and the exact paths of the workers' probes.
INTERCEPTED_PREFIXES = _roots([e.family for e in ENDPOINTS if e.intercepted and e.path.startswith("/v1/")])
INTERCEPTED_EXACT = tuple(e.path for e in ENDPOINTS if e.intercepted and not e.path.startswith("/v1/"))
# The error envelope of each API family, for the gate and Envoy's local replies.
REPLY_SHAPES: tuple[tuple[str, Shape], ...] = tuple(
    (root, next(e.shape for e in ENDPOINTS if e.family == root))
    for root in _roots([e.family for e in ENDPOINTS if e.dialect]))
