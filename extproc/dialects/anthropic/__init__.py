"""The Anthropic Messages dialect: `spec` (what the gateway writes in it, its usage), `history` (a
conversation fitted for an Anthropic provider), `from_chat` and `from_chat_stream` (Anthropic from Chat).
The names other modules use are re-exported here."""

from extproc.dialects.anthropic.history import TOOL_ID_RE, fit_history, fitted_tool_id, may_need_fit
from extproc.dialects.anthropic.spec import (
    PATH,
    SPEC,
    count_tokens_body,
    count_tokens_estimate,
    error_body,
    error_obj,
    models_body,
    stream_error_event,
    usage,
)

__all__ = ["PATH", "SPEC", "TOOL_ID_RE", "count_tokens_body", "count_tokens_estimate", "error_body", "error_obj",
           "fit_history", "fitted_tool_id", "may_need_fit", "models_body", "stream_error_event", "usage"]
