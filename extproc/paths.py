"""Which requests the gateway thinks about, and which go straight through: the Python side of the
endpoint table (`endpoints.ENDPOINTS`).

The same table drives the Envoy route table (intercepted routes run the ext_proc filter, everything
else goes to the bypass provider with the filter disabled, so bypassed traffic costs no Python work),
and `classify()`. Behind the gateway's own Envoy, `classify()` sees only the intercepted prefixes; in
a mesh, whose route table is not ours, it also sees every other path (`Kind.BYPASS`), which the
headers phase lets through untouched, skipping the bodies.
"""

from __future__ import annotations

from .dialects.base import Dialect
from .endpoints import ANTHROPIC_SIGNS, ENDPOINTS, Kind, endpoint

# Only these kinds carry a request body the gateway must read.
BODY_KINDS = frozenset(e.kind for e in ENDPOINTS if e.routed)
# Token counting: estimated locally when the provider does not speak the client's dialect.
COUNT_KINDS = frozenset({Kind.COUNT_TOKENS, Kind.INPUT_TOKENS})
# APIs only a provider of the client's own dialect has (batches, stored responses): forwarded as they are.
NATIVE_KINDS = frozenset({Kind.MESSAGES_OTHER, Kind.RESPONSES_OTHER})

_DIALECT_OF: dict[Kind, Dialect | None] = {e.kind: e.dialect for e in ENDPOINTS}

__all__ = ["BODY_KINDS", "COUNT_KINDS", "NATIVE_KINDS", "Kind", "classify", "client_dialect", "split_path"]


def split_path(raw: str) -> tuple[str, str]:
    """`/v1/messages?beta=true` → (`/v1/messages`, `?beta=true`)."""
    path, sep, query = raw.partition("?")
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path, sep + query


def classify(method: str, path: str) -> Kind:
    """`path` without the query string (and without a trailing slash: see `split_path`). A method an
    intercepted API does not serve is `Kind.NOT_SERVED` (`endpoints.refusal` says what to answer)."""
    row = endpoint(path)
    if row.methods is not None and method not in row.methods:
        return Kind.NOT_SERVED if row.intercepted else Kind.BYPASS
    return row.kind


def client_dialect(kind: Kind, headers: dict[str, str]) -> Dialect:
    """The dialect the client speaks: by path, and where either vendor's SDK may call (/v1/models) by
    the headers it sent. Paths the table does not know get Anthropic's (the base of the envelope
    both SDKs read)."""
    dialect = _DIALECT_OF.get(kind)
    if dialect is not None:
        return dialect
    if kind is Kind.MODELS or kind is Kind.NOT_SERVED:
        return "anthropic" if any(sign in headers for sign in ANTHROPIC_SIGNS) else "openai"
    return "anthropic"
