"""Prompt caching across dialects: what a translated request needs so the provider's cache keeps hitting.

The two vendors cache differently, and a gateway that translates loses both unless it says so:

- OpenAI caches automatically (prompts of 1024 tokens and more, exact prefix), but routes a request to a
  cache by a hash of its first tokens plus `prompt_cache_key`. Claude Code sessions all start with the
  same system prompt and tools, so without a key they all crowd onto the same cache machines, which
  overflow under load. A translated request therefore gets a stable key per conversation: the client's session
  (`extproc.session_id`, the rule budgets and records use too), else `metadata.user_id` itself, hashed
  with the provider's name, so the provider never sees the session id
  and two vendors cannot link their keys. A client's own `prompt_cache_key` (Codex sends one) wins; a
  provider with `prompt_cache_key: false` (some OpenAI-compatible servers reject the field) gets none.
- Anthropic caches only up to `cache_control` breakpoints the request marks (at most 4). A request
  translated from an OpenAI client has none, so every turn would be billed in full. It gets breakpoints
  on the last tool, the last system block, the end of the conversation (written now, read by the next
  turn) and the end of the previous request's conversation (read now) — unless the client marked its
  own (`cache_control` on Chat content parts, messages or tools, carried by the translator: the
  client's hints win), the provider says `prompt_caching: off`, or the prompt is shorter than the
  model's minimum (Anthropic would not cache it anyway).

Applied after translation, to translated requests only: a same-dialect request goes byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fnmatch import fnmatchcase

from extproc.dialects.anthropic.spec import count_tokens_estimate
from extproc.dialects.base import Dialect, Target
from extproc.session_id import session_id

MAX_BREAKPOINTS = 4  # Anthropic rejects more
EPHEMERAL = {"type": "ephemeral"}
# The shortest prompt Anthropic caches, by model (its prompt-caching documentation); others: 1024.
MIN_CACHEABLE_TOKENS = (("claude-opus-4-5*", 4096), ("claude-opus-4-6*", 4096), ("claude-haiku-4-5*", 4096),
                        ("claude-sonnet-4-6*", 2048), ("claude-3-5-haiku*", 2048), ("claude-3-haiku*", 2048))
DEFAULT_MIN_TOKENS = 1024
_NOT_CACHEABLE = frozenset({"thinking", "redacted_thinking"})  # Anthropic refuses cache_control there


def prepare(body: dict, client_body: dict, client: Dialect, target: Target, headers: Mapping[str, str]) -> None:
    """Make a translated request body (`body`, in the provider's dialect, changed in place) cache-friendly
    for `target`; `client_body` and `headers` are the client's request."""
    if target.dialect == "anthropic":
        if target.prompt_caching == "auto" and client != "anthropic":
            add_breakpoints(body)
    elif not target.prompt_cache_key:
        body.pop("prompt_cache_key", None)
    elif "prompt_cache_key" not in body:
        conversation = conversation_of(headers, client_body)
        if conversation:
            body["prompt_cache_key"] = cache_key(target.name, conversation)


def conversation_of(headers: Mapping[str, str], body: dict) -> str | None:
    """What names the client's conversation: its session (`session_id`), else its `metadata.user_id`
    (one user's requests share a cache, which still beats every client crowding onto one)."""
    session = session_id(headers, body)
    if session:
        return session
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user if isinstance(user, str) and user else None


def cache_key(provider: str, conversation: str) -> str:
    """A stable `prompt_cache_key` (OpenAI allows 64 characters) that reveals neither the conversation
    nor, across providers, that two keys belong together."""
    digest = hashlib.sha256(f"lunaroute\0{provider}\0{conversation}".encode()).hexdigest()
    return "lr-" + digest[:40]


def min_cacheable_tokens(model: object) -> int:
    if isinstance(model, str):
        for pattern, tokens in MIN_CACHEABLE_TOKENS:
            if fnmatchcase(model, pattern):
                return tokens
    return DEFAULT_MIN_TOKENS


def client_hint(*holders: object) -> dict | None:
    """The client's own cache hint on a Chat content part, message or tool (`cache_control:
    {"type": "ephemeral", "ttl": "5m" | "1h"}`), cleaned for Anthropic; the first holder that has one."""
    for holder in holders:
        hint = holder.get("cache_control") if isinstance(holder, dict) else None
        if isinstance(hint, dict) and hint.get("type") == "ephemeral":
            ttl = hint.get("ttl")
            return {"type": "ephemeral", "ttl": ttl} if ttl in ("5m", "1h") else dict(EPHEMERAL)
    return None


def add_breakpoints(body: dict) -> None:
    """Mark an Anthropic request's stable prefix (see the module docstring); nothing when it already
    has a breakpoint or is too short to be cached."""
    tools = value if isinstance(value := body.get("tools"), list) else []
    system = value if isinstance(value := body.get("system"), list) else []
    messages = value if isinstance(value := body.get("messages"), list) else []
    holders = [*tools, *system, *(b for m in messages for b in _blocks(m))]
    if any(isinstance(h, dict) and "cache_control" in h for h in holders):
        return  # the client's own breakpoints win
    if count_tokens_estimate(body) < min_cacheable_tokens(body.get("model")):
        return
    marks = [tools[-1] if tools else None, system[-1] if system else None]
    marks += [_last_block(messages[i]) for i in _conversation_ends(messages)]
    for block in [b for b in marks if isinstance(b, dict)][:MAX_BREAKPOINTS]:
        block["cache_control"] = dict(EPHEMERAL)


def _blocks(message: object) -> list:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _last_block(message: dict) -> dict | None:
    return next((b for b in reversed(_blocks(message)) if isinstance(b, dict) and b.get("type") not in _NOT_CACHEABLE),
                None)


def _conversation_ends(messages: list) -> list[int]:
    """The last message (this request's end), and the message before the last assistant turn (where the
    previous request of a stateless client ended, so this one reads what that one wrote)."""
    if not messages:
        return []
    ends = [len(messages) - 1]
    for i in range(len(messages) - 2, 0, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == "assistant":
            ends.append(i - 1)
            break
    return ends
