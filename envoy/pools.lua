-- LunaRoute's pool pick on the fast path: which key of a pooled provider a conversation starts on.
--
-- Runs after envoy/fast.lua. When the fast path sent a request to a pooled provider
-- (`x-lunaroute-fast`), this picks the start key exactly as extproc/pools/pick.py does for the Python
-- path: weighted rendezvous hashing (FNV-1a and MurmurHash3's finalizer, integers only) of the conversation id over the keys that
-- are not out (cooling or revoked), and names it in `x-lunaroute-pool`; the provider's `fast/…@key`
-- route sends the request to that key's start cluster, which walks the rest of the pool on a 429.
-- The conversation id is the client's session (extproc/session_id.py: Claude Code's header,
-- `metadata.user_id`'s `_session_` suffix, `x-session-id`, Codex's `session-id` / `session_id`, the
-- body's `prompt_cache_key`); when
-- the request names none (or says it in a form only a JSON parser reads), or every key is out, the
-- request goes to Python instead, which decides the same way and answers an all-out pool itself.
--
-- POOLS (prepended by extproc/envoy_config/pools.py) holds each pooled provider's keys and weights
-- in config order and until when each unusable key is out; it is delivered as a file Envoy watches
-- (ECDS), rewritten by the workers when a key starts or stops cooling.

local NAMES = POOLS.names

local bit = require("bit")
local band, bxor, lshift, rshift, tobit = bit.band, bit.bxor, bit.lshift, bit.rshift, bit.tobit
local byte = string.byte

-- 32-bit FNV-1a; h * 16777619 as (h << 24) + h * 403, which a double holds exactly.
local function fnv1a(s)
  local h = tobit(0x811C9DC5)
  for i = 1, #s do
    h = bxor(h, byte(s, i))
    h = tobit(lshift(h, 24) + h * 403)
  end
  if h < 0 then
    return h + 4294967296
  end
  return h
end

-- a * c mod 2^32 for a 32-bit constant c, in halves a double holds exactly
local function mul32(a, c)
  return tobit(a * band(c, 0xFFFF) + lshift(tobit(a * rshift(c, 16)), 16))
end

-- MurmurHash3's finalizer (extproc.pools.pick.mix32)
local function mix32(h)
  h = tobit(h)
  h = bxor(h, rshift(h, 16))
  h = mul32(h, 0x85EBCA6B)
  h = bxor(h, rshift(h, 13))
  h = mul32(h, 0xC2B2AE35)
  h = bxor(h, rshift(h, 16))
  if h < 0 then
    return h + 4294967296
  end
  return h
end

local function pick(pool, conversation, now)
  local best, chosen = nil, nil
  local prefix = conversation .. "\0"
  for _, key in ipairs(pool.keys) do
    local out = pool.out[key.name]
    if out == nil or out <= now then
      for i = 0, key.weight - 1 do
        local score = mix32(fnv1a(prefix .. key.name .. "#" .. i))
        if best == nil or score > best then
          best, chosen = score, key.name
        end
      end
    end
  end
  return chosen
end

-- extproc.session_id.valid_session: 1-128 characters of [A-Za-z0-9_.:@-], the first a letter
-- or digit (Python's `$` also allows one final newline).
local function valid(value)
  if type(value) ~= "string" then
    return nil
  end
  local bare = value:sub(-1) == "\n" and value:sub(1, -2) or value
  if #bare >= 1 and #bare <= 128 and bare:find("^[A-Za-z0-9][A-Za-z0-9_.:@%-]*$") then
    return value
  end
  return nil
end

-- extproc.pools.pick.conversation_id, as far as it can be read without parsing JSON: false means
-- "only Python can tell", nil "no id here".
local function conversation_of(headers, body)
  local id = valid(headers:get("x-claude-code-session-id"))
  if id then
    return id
  end
  local user = body[NAMES.user_id_key]
  if type(user) == "string" then
    if user:sub(1, 1) == "{" then
      return false  -- a JSON document in a string: Python reads its session_id
    end
    local tail = user:match(".*_session_(.*)$")
    if tail and valid(tail) then
      return tail
    end
  end
  id = valid(headers:get("x-session-id")) or valid(headers:get("session-id")) or valid(headers:get("session_id"))
    or valid(body[NAMES.cache_key_key])
  return id
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local provider = headers:get(NAMES.fast)
  local pool = provider and POOLS.providers[provider]
  if pool == nil then
    return
  end
  local body = handle:streamInfo():dynamicMetadata():get(NAMES.body_namespace) or {}
  local conversation = conversation_of(headers, body)
  local key = conversation and pick(pool, conversation, os.time())
  if key then
    headers:replace(NAMES.pool, key)
  else
    headers:remove(NAMES.fast)  -- Python decides: a first user turn to hash, or every key out
  end
  handle:clearRouteCache()
end
