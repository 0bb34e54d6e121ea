"""Mock Anthropic, OpenAI (Chat Completions) and OpenAI Responses providers (aiohttp) on loopback, for
end-to-end tests.

They answer like the real APIs (JSON and SSE shapes from the public references), record every
request exactly as received (method, path, query, headers, raw body bytes), and can be told to
fail the next N requests (e.g. 529 overloaded) or to send a scripted answer. With `prompt_cache=True`
the Anthropic and OpenAI mocks report usage from a model of their vendor's prompt cache
(`AnthropicPromptCache`, `OpenAIPromptCache`) instead of fixed numbers.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web


def free_port(count: int = 1) -> int:
    """A port p such that p..p+count-1 are all free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        ok = True
        for p in range(base + 1, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Scripted:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None  # sent one by one (SSE), instead of body
    pause_s: float = 0.002  # between chunks
    stall: bool = False  # after the chunks, send nothing more and never finish (until the client leaves)


def presented_key(request: web.Request) -> str:
    """The provider key a request carries (x-api-key, else a Bearer token)."""
    auth = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or (auth[7:] if auth[:7].lower() == "bearer " else "")


class KeyQuotas:
    """Per-key request quotas, like a provider's per-minute limits: each key in `limits` may make that
    many requests per `window_s`, then gets a 429 with `retry-after`; a key in `revoked` gets a 401.
    Keys without a limit are not limited. Every answer to a limited key carries Anthropic's
    `anthropic-ratelimit-requests-*` headers."""

    def __init__(self) -> None:
        self.limits: dict[str, int] = {}
        self.used: dict[str, int] = {}
        self.revoked: set[str] = set()
        self.window_s = 60.0
        self.retry_after = 30
        self.started = time.time()
        self.served: list[str] = []  # the key of every request that was answered (not refused)
        self.refused: list[tuple[str, int]] = []

    def limit(self, limits: dict[str, int], window_s: float = 60.0, retry_after: int = 30) -> None:
        self.limits.update(limits)
        self.window_s, self.retry_after = window_s, retry_after

    def _roll(self) -> None:
        if time.time() - self.started >= self.window_s:
            self.used.clear()
            self.started = time.time()

    def admit(self, request: web.Request) -> web.Response | None:
        key = presented_key(request)
        self._roll()
        if key in self.revoked:
            self.refused.append((key, 401))
            return web.json_response({"type": "error", "error": {"type": "authentication_error",
                                                                  "message": "invalid x-api-key"}}, status=401)
        if key in self.limits and self.used.get(key, 0) >= self.limits[key]:
            self.refused.append((key, 429))
            return web.json_response({"type": "error", "error": {"type": "rate_limit_error",
                                                                  "message": "rate limited (mock quota)"}},
                                     status=429, headers={"retry-after": str(self.retry_after)})
        self.used[key] = self.used.get(key, 0) + 1
        self.served.append(key)
        return None

    def headers(self, request: web.Request) -> dict[str, str]:
        key = presented_key(request)
        if key not in self.limits:
            return {}
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started + self.window_s))
        return {"anthropic-ratelimit-requests-limit": str(self.limits[key]),
                "anthropic-ratelimit-requests-remaining": str(max(self.limits[key] - self.used.get(key, 0), 0)),
                "anthropic-ratelimit-requests-reset": reset}


def _sse(event: str | None, data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        for b in reversed(c or []):
            if b.get("type") == "text":
                return b.get("text", "")
        return ""
    return ""


_NAMED_TOOL = re.compile(r"use the tool (\w+) (\{.*\})", re.S)


def _named_call(text: str) -> tuple[str, dict] | None:
    """`use the tool Read {"file_path": "/x"}` asks the mock for exactly that call (real clients run it)."""
    m = _NAMED_TOOL.search(text)
    return (m.group(1), json.loads(m.group(2))) if m else None


def _tool_results(messages: list) -> list[str]:
    out = []
    for m in messages:
        if m.get("role") == "tool":
            out.append(str(m.get("content")))
        if m.get("role") == "user" and isinstance(m.get("content"), list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    c = b.get("content")
                    out.append(c if isinstance(c, str) else json.dumps(c))
    return out


def _tokens(text: str) -> int:
    """The mocks' tokenizer: about 4 characters per token, as the gateway estimates."""
    return max(len(text) // 4, 1)


class AnthropicPromptCache:
    """Anthropic's prompt cache as its documentation describes it. The prompt is a sequence of blocks
    (tools, then system blocks, then each message's content blocks); a block with `cache_control` is a
    breakpoint. A request reads the longest prefix that ends at most 20 blocks before one of its
    breakpoints and that an earlier request wrote; it writes the prefix at each later breakpoint that is
    long enough (`min_tokens`). Without a breakpoint nothing is read or written."""

    LOOKBACK = 20

    def __init__(self, min_tokens: int = 1024) -> None:
        self.min_tokens = min_tokens
        self.written: set[str] = set()

    @staticmethod
    def blocks(req: dict) -> list[tuple[str, bool]]:
        """(the block as the model sees it, marked as a breakpoint) for every block, in prompt order."""
        out = [(json.dumps({k: v for k, v in t.items() if k != "cache_control"}, sort_keys=True),
                "cache_control" in t) for t in req.get("tools") or []]
        system = req.get("system") or []
        for b in [{"type": "text", "text": system}] if isinstance(system, str) else system:
            if not b["text"].startswith("x-anthropic-billing-header:"):  # Claude Code's, read apart from the prompt
                out.append(("system:" + b["text"], "cache_control" in b))
        for m in req.get("messages") or []:
            content = m["content"]
            for b in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                seen = {k: v for k, v in b.items() if k != "cache_control"}
                out.append((m["role"] + ":" + json.dumps(seen, sort_keys=True), "cache_control" in b))
        return out

    def usage(self, req: dict) -> dict:
        blocks = self.blocks(req)
        hashes, totals = [], []
        h, total = hashlib.sha256(str(req.get("model")).encode()), 0
        for text, _ in blocks:
            h.update(text.encode() + b"\0")
            hashes.append(h.hexdigest())
            total += _tokens(text)
            totals.append(total)
        marks = [i for i, (_, mark) in enumerate(blocks) if mark]
        read_at = max((j for b in marks for j in range(b, max(b - self.LOOKBACK, -1), -1) if hashes[j] in self.written),
                      default=-1)
        read = totals[read_at] if read_at >= 0 else 0
        written_at = [b for b in marks if b > read_at and totals[b] >= self.min_tokens]
        self.written.update(hashes[b] for b in written_at)
        write = totals[written_at[-1]] - read if written_at else 0
        return {"input_tokens": total - read - write, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write}


class OpenAIPromptCache:
    """OpenAI's automatic prompt cache as its documentation describes it: a request reads the longest
    prefix it shares with an earlier request of the same model and `prompt_cache_key`, once that is at
    least 1024 tokens, in steps of 128 tokens. The prompt is the tools, then every message, as JSON."""

    MIN_TOKENS = 1024
    STEP = 128

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str | None], list[str]] = {}

    @staticmethod
    def prompt(req: dict) -> str:
        return json.dumps(req.get("tools") or [], sort_keys=True) + "".join(
            json.dumps(m, sort_keys=True) for m in req.get("messages") or [])

    def usage(self, req: dict) -> dict:
        prompt = self.prompt(req)
        earlier = self.seen.setdefault((str(req.get("model")), req.get("prompt_cache_key")), [])
        shared = max((len(os.path.commonprefix([prompt, e])) for e in earlier), default=0) // 4
        steps = (shared - self.MIN_TOKENS) // self.STEP
        cached = self.MIN_TOKENS + steps * self.STEP if shared >= self.MIN_TOKENS else 0
        earlier.append(prompt)
        total = _tokens(prompt)
        return {"prompt_tokens": total, "completion_tokens": 9, "total_tokens": total + 9,
                "prompt_tokens_details": {"cached_tokens": cached}}


class MockProvider:
    """Base: the server in its own thread and loop, recording and failure injection."""

    name = "mock"

    def __init__(self, pause_s: float = 0.002, prompt_cache: bool = False) -> None:
        self.pause_s = pause_s  # between the chunks of its own SSE answers (long streams for soak runs)
        self.prompt_cache = prompt_cache
        self.requests: list[Recorded] = []
        self.script: list[Scripted] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        self.quotas = KeyQuotas()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, body: dict | str, count: int = 1, headers: dict | None = None) -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        ctype = "text/plain" if isinstance(body, str) else "application/json"
        for _ in range(count):
            self.script.append(Scripted(status, raw, ctype, headers or {}))

    def stream_next(self, chunks: list[bytes], pause_s: float = 0.002, stall: bool = False) -> None:
        """The next request gets these SSE chunks, `pause_s` apart (and then nothing, if `stall`)."""
        self.script.append(Scripted(200, b"", "text/event-stream", chunks=chunks, pause_s=pause_s, stall=stall))

    def reset(self) -> None:
        self.requests.clear()
        self.script.clear()
        self.quotas = KeyQuotas()

    def start(self) -> MockProvider:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{self.name} mock did not start")
        return self

    def stop(self) -> None:
        async def _cleanup() -> None:
            if self._runner:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._rate_headers)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path, request.query_string,
                                      {k.lower(): v for k, v in request.headers.items()}, body))
        refused = self.quotas.admit(request)
        if refused is not None:
            return refused
        if self.script:
            s = self.script.pop(0)
            if s.chunks is None:
                return web.Response(status=s.status, body=s.body, content_type=None,
                                    headers={"content-type": s.content_type, **s.headers})
            return await self._send_chunks(request, s.status, s.chunks, s.content_type, s.pause_s, s.stall)
        try:
            return await self.route(request, body)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):  # a real API: 400
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error",
                                                                  "message": "the mock cannot read this request"}},
                                     status=400)

    async def _rate_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Anthropic's rate-limit headers on every answer to a key under a quota."""
        response.headers.update(self.quotas.headers(request))

    async def _send_chunks(self, request: web.Request, status: int, chunks: list[bytes],
                           ctype: str = "text/event-stream", pause_s: float = 0.002,
                           stall: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers={"content-type": ctype, "cache-control": "no-cache"})
        await resp.prepare(request)
        try:
            for c in chunks:
                await resp.write(c)
                await asyncio.sleep(pause_s)
            while stall and request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # a client may hang up once it has what it needs (Codex does after response.completed)
        return resp

    async def route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        return web.json_response({"echo": request.path, "method": request.method})


_ANTHROPIC_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _anthropic_rejects(messages: list) -> str | None:
    """What the real Messages API refuses in a conversation's history, in its words (None: accepted)."""
    for i, message in enumerate(messages):
        for j, block in enumerate(message.get("content") if isinstance(message.get("content"), list) else ()):
            if block.get("type") == "thinking" and not block.get("signature"):
                return f"messages.{i}.content.{j}.thinking.signature: Field required"
            key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(block.get("type"))
            if key and not _ANTHROPIC_TOOL_ID.fullmatch(str(block.get(key))):
                return f"messages.{i}.content.{j}.{key}: String should match pattern '^[a-zA-Z0-9_-]+$'"
    return None


class MockAnthropic(MockProvider):
    name = "anthropic"

    def __init__(self, pause_s: float = 0.002, prompt_cache: bool = False) -> None:
        super().__init__(pause_s, prompt_cache)
        self.cache = AnthropicPromptCache()

    def reset(self) -> None:
        super().reset()
        self.cache = AnthropicPromptCache()

    async def route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if path == "/v1/models":
            return web.json_response({"data": [{"type": "model", "id": "claude-mock-1", "display_name": "Mock",
                                                "created_at": "2025-01-01T00:00:00Z"}],
                                      "has_more": False, "first_id": "claude-mock-1", "last_id": "claude-mock-1"})
        if path == "/v1/messages/count_tokens":
            return web.json_response({"input_tokens": 4242})
        if path != "/v1/messages":
            return await super().route(request, body)
        req = json.loads(body)
        model = req.get("model", "claude-x")
        messages = req.get("messages", [])
        rejected = _anthropic_rejects(messages)
        if rejected:
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error",
                                                                 "message": rejected}}, status=400)
        results = _tool_results(messages)
        text_in = _last_user_text(messages)
        content: list[dict]
        if req.get("tools") and "use the tool" in text_in and not results:
            tool, args = _named_call(text_in) or (req["tools"][0]["name"], {"city": "Paris"})
            content = [{"type": "text", "text": "Let me check."},
                       {"type": "tool_use", "id": "toolu_mock1", "name": tool, "input": args}]
            stop = "tool_use"
        else:
            text = f"tool said: {results[-1]}" if results else "Hello from mock Anthropic"
            content = [{"type": "text", "text": text}]
            stop = "end_turn"
        usage = {"input_tokens": 21, "output_tokens": 7, "cache_read_input_tokens": 5,
                 "cache_creation_input_tokens": 0}
        if self.prompt_cache:
            usage = {**self.cache.usage(req), "output_tokens": 7}
        msg = {"id": "msg_mock1", "type": "message", "role": "assistant", "model": model, "content": content,
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not req.get("stream"):
            raw = json.dumps(msg).encode()
            if "gzip" in request.headers.get("accept-encoding", ""):
                return web.Response(body=gzip.compress(raw), headers={"content-type": "application/json",
                                                                       "content-encoding": "gzip"})
            return web.Response(body=raw, content_type="application/json")
        start = {**msg, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        chunks = [_sse("message_start", {"type": "message_start", "message": start}),
                  _sse("ping", {"type": "ping"})]
        for i, block in enumerate(content):
            if block["type"] == "text":
                chunks.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                           "content_block": {"type": "text", "text": ""}}))
                words = block["text"].split(" ")
                for j, w in enumerate(words):
                    piece = w if j == 0 else " " + w
                    chunks.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                               "delta": {"type": "text_delta", "text": piece}}))
            else:
                chunks.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                           "content_block": {**block, "input": {}}}))
                args = json.dumps(block["input"])
                for part in (args[:5], args[5:]):
                    chunks.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                               "delta": {"type": "input_json_delta",
                                                                         "partial_json": part}}))
            chunks.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        chunks.append(_sse("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": stop, "stop_sequence": None},
                                             "usage": {"output_tokens": 7}}))
        chunks.append(_sse("message_stop", {"type": "message_stop"}))
        return await self._send_chunks(request, 200, chunks, pause_s=self.pause_s)


class MockOpenAI(MockProvider):
    name = "openai"

    def __init__(self, pause_s: float = 0.002, prompt_cache: bool = False) -> None:
        super().__init__(pause_s, prompt_cache)
        self.cache = OpenAIPromptCache()

    def reset(self) -> None:
        super().reset()
        self.cache = OpenAIPromptCache()

    async def route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if path == "/v1/models":
            return web.json_response({"object": "list", "data": [
                {"id": "gpt-mock", "object": "model", "created": 1700000000, "owned_by": "mock"}]})
        if path == "/v1/embeddings":
            req = json.loads(body)
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            return web.json_response({"object": "list", "model": req.get("model"), "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        if path != "/v1/chat/completions":
            return await super().route(request, body)
        req = json.loads(body)
        model = req.get("model", "gpt-x")
        messages = req.get("messages", [])
        results = _tool_results(messages)
        text_in = _last_user_text(messages)
        # "reasoning" in the prompt: a DeepSeek/Kimi-style reasoning model (reasoning_content first)
        reasoning = "reasoning" in text_in
        tool_calls = None
        text: str | None
        if req.get("tools") and "use the tool" in text_in and not results:
            names = [t["function"]["name"] for t in req["tools"]]
            count = 2 if "parallel" in text_in and len(names) > 1 else 1
            tool_calls = [{"id": f"call_mock{i}", "type": "function",
                           "function": {"name": names[i], "arguments": json.dumps({"city": "Paris", "n": i})}}
                          for i in range(count)]
            named = _named_call(text_in)
            if named:
                tool_calls = [{"id": "call_mock0", "type": "function",
                               "function": {"name": named[0], "arguments": json.dumps(named[1])}}]
            if reasoning:  # Kimi-style ids, which break Anthropic's pattern
                for i, call in enumerate(tool_calls):
                    call["id"] = f"functions.{call['function']['name']}:{i}"
            text, finish = None, "tool_calls"
        else:
            text = f"tool said: {results[-1]}" if results else "Hello from mock OpenAI"
            finish = "stop"
        usage = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                 "prompt_tokens_details": {"cached_tokens": 10}}
        if self.prompt_cache:
            usage = self.cache.usage(req)
        created = 1700000000
        if not req.get("stream"):
            message = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return web.json_response({"id": "chatcmpl-mock1", "object": "chat.completion", "created": created,
                                      "model": model, "choices": [{"index": 0, "message": message,
                                                                   "finish_reason": finish}], "usage": usage})
        base = {"id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": created, "model": model}

        def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
            return _sse(None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

        chunks = [chunk({"role": "assistant", "content": ""})]
        if reasoning:
            chunks.append(chunk({"reasoning_content": "Thinking it over."}))
        if text is not None:
            for j, w in enumerate(text.split(" ")):
                chunks.append(chunk({"content": w if j == 0 else " " + w}))
        for i, call in enumerate(tool_calls or []):
            chunks.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                  "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        for i, call in enumerate(tool_calls or []):  # argument deltas interleave by index, no ids
            args = call["function"]["arguments"]
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[:6]}}]}))
        for i, call in enumerate(tool_calls or []):
            args = call["function"]["arguments"]
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[6:]}}]}))
        chunks.append(chunk({}, finish))
        if (req.get("stream_options") or {}).get("include_usage"):
            chunks.append(_sse(None, {**base, "choices": [], "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        return await self._send_chunks(request, 200, chunks, pause_s=self.pause_s)


def _responses_user_text(items: object) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        texts = [p.get("text", "") for p in content or [] if p.get("type") == "input_text"]
        return texts[-1] if texts else ""
    return ""


class MockResponses(MockProvider):
    """A provider that speaks only the OpenAI Responses API (`/v1/responses`), stateless like Codex's
    `store: false` traffic: it answers from the input it gets and keeps nothing."""

    name = "responses"

    async def route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if path == "/v1/models":
            return web.json_response({"object": "list", "data": [
                {"id": "resp-mock", "object": "model", "created": 1700000000, "owned_by": "mock"}]})
        if path == "/v1/responses/input_tokens":
            return web.json_response({"object": "response.input_tokens", "input_tokens": 777})
        if path != "/v1/responses":
            return await super().route(request, body)
        req = json.loads(body)
        items = req.get("input") or []
        outputs = [str(i.get("output")) for i in items if isinstance(items, list) and isinstance(i, dict)
                   and i.get("type") in ("function_call_output", "custom_tool_call_output")]
        text_in = _responses_user_text(items)
        model = req.get("model", "resp-x")
        output: list[dict] = []
        if req.get("tools") and "use the tool" in text_in and not outputs:
            named = _named_call(text_in)
            name, args = named or (req["tools"][0]["name"], {"city": "Paris"})
            output.append({"type": "function_call", "id": "fc_mock1", "call_id": "call_rmock1", "name": name,
                           "arguments": json.dumps(args), "status": "completed"})
        else:
            text = f"tool said: {outputs[-1]}" if outputs else "Hello from mock Responses"
            output.append({"type": "message", "id": "msg_rmock1", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]})
        usage = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 11,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 51}
        response = {"id": "resp_mock1", "object": "response", "created_at": 1700000000, "status": "completed",
                    "error": None, "incomplete_details": None, "model": model, "output": output, "usage": usage,
                    "store": req.get("store", True)}
        if not req.get("stream"):
            return web.json_response(response)
        seq = iter(range(1000))

        def event(kind: str, **payload: object) -> bytes:
            return _sse(kind, {"type": kind, "sequence_number": next(seq), **payload})

        start = {**response, "status": "in_progress", "output": [], "usage": None}
        chunks = [event("response.created", response=start), event("response.in_progress", response=start)]
        for index, item in enumerate(output):
            ids = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                text = item["content"][0]["text"]
                chunks.append(event("response.output_item.added", output_index=index,
                                    item={**item, "status": "in_progress", "content": []}))
                chunks.append(event("response.content_part.added", **ids, content_index=0,
                                    part={"type": "output_text", "text": "", "annotations": []}))
                for j, word in enumerate(text.split(" ")):
                    chunks.append(event("response.output_text.delta", **ids, content_index=0,
                                        delta=word if j == 0 else " " + word))
                chunks.append(event("response.output_text.done", **ids, content_index=0, text=text))
                chunks.append(event("response.content_part.done", **ids, content_index=0,
                                    part=item["content"][0]))
            else:
                chunks.append(event("response.output_item.added", output_index=index,
                                    item={**item, "arguments": "", "status": "in_progress"}))
                for part in (item["arguments"][:5], item["arguments"][5:]):
                    chunks.append(event("response.function_call_arguments.delta", **ids, delta=part))
                chunks.append(event("response.function_call_arguments.done", **ids, arguments=item["arguments"]))
            chunks.append(event("response.output_item.done", output_index=index, item=item))
        chunks.append(event("response.completed", response=response))
        return await self._send_chunks(request, 200, chunks)


def main() -> None:
    """`python -m tests.mock_providers anthropic|openai|responses PORT [PAUSE_S]`: serve a mock until killed
    (benchmarks); PAUSE_S between the chunks of its streams."""
    import sys
    import time

    kind, port = sys.argv[1], int(sys.argv[2])
    pause_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.002
    mock = {"anthropic": MockAnthropic, "openai": MockOpenAI, "responses": MockResponses}[kind](pause_s)
    mock.port = port
    mock.requests = _Discard()
    mock.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


class _Discard(list):
    """A request log that keeps nothing (long benchmark runs)."""

    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
