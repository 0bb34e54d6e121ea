"""OpenAI Chat Completions, the hub dialect: `spec` (what the gateway writes in it, its usage), `read`
(how translators read a completion and its stream), `chunks` (the base of streams written in it), and
Chat from the other dialects: `from_anthropic`, `from_responses` and their `_stream` modules. The names
other modules use are re-exported here."""

from extproc.dialects.openai_chat.spec import (
    PATH,
    SPEC,
    error_body,
    error_obj,
    models_body,
    stream_error_chunk,
    usage,
)

__all__ = ["PATH", "SPEC", "error_body", "error_obj", "models_body", "stream_error_chunk", "usage"]
