"""The OpenAI Responses API dialect: `spec` (what the gateway writes in it, its usage, its tools as a Chat
provider knows them), `from_chat` and `from_chat_stream` (Responses from Chat). The names other modules
use are re-exported here."""

from extproc.dialects.openai_responses.spec import DIALECT, PATH, SPEC, client_tools, hub_param, usage

__all__ = ["DIALECT", "PATH", "SPEC", "client_tools", "hub_param", "usage"]
