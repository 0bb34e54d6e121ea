-- LunaRoute's gate: the first HTTP filter of every request on the gateway's listener.
--
-- It runs before anything reads a header, on every route and every method:
--   1. seal: every client-sent `x-lunaroute-*` and `x-envoy-*` request header is removed, so nothing a
--      client sends can pick a cluster, a fallback chain or a retry budget;
--   2. refuse what a browser could forge cross-site (an Origin that is not allowed, a body that is not
--      JSON on an API path);
--   3. gateway keys (when `access.keys` is configured): the key from `x-lunaroute-key`, else
--      `x-api-key`, else `Authorization: Bearer`, is hashed (SHA-256) and looked up; it never travels
--      further. The verified key's name goes on in `x-lunaroute-client` (set after sealing, so only
--      the gate can have written it), its allow-lists in `x-lunaroute-scope`. Probes (GET/HEAD of
--      /, /healthz, /readyz, /metrics) need no key.
--
-- CONFIG (prepended by extproc/envoy_config/gate.py from the gateway's config) holds the key digests,
-- the allowed origins and the error replies, pre-rendered in each dialect by the dialect modules, and
-- the header and metadata names Envoy and Python share (`names`, from extproc/wire.py). It is
-- delivered to Envoy as a file Envoy watches (ECDS), so rotating a key needs no restart.

local NAMES = CONFIG.names

local bit = require("bit")
local band, bnot, bxor, ror, rshift, tobit = bit.band, bit.bnot, bit.bxor, bit.ror, bit.rshift, bit.tobit
local byte, char, rep, format = string.byte, string.char, string.rep, string.format

-- SHA-256 (FIPS 180-4). Envoy's Lua API has no hash function; keys are short, so this costs
-- microseconds per request.
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256_hex(msg)
  local len = #msg
  local bits = len * 8
  -- pad: 0x80, zeros, then the length in bits as a 64-bit big-endian number
  msg = msg .. "\128" .. rep("\0", (55 - len) % 64)
  local hi = math.floor(bits / 4294967296)
  msg = msg .. char(
    band(rshift(hi, 24), 255), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255), band(hi, 255),
    band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
  local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
  local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local a, b, c, d = byte(msg, chunk + i * 4, chunk + i * 4 + 3)
      w[i] = tobit(a * 16777216 + b * 65536 + c * 256 + d)
    end
    for i = 16, 63 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for i = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(h + S1 + ch + K[i + 1] + w[i])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
    end
    h0, h1, h2, h3 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d)
    h4, h5, h6, h7 = tobit(h4 + e), tobit(h5 + f), tobit(h6 + g), tobit(h7 + h)
  end
  return bit.tohex(h0) .. bit.tohex(h1) .. bit.tohex(h2) .. bit.tohex(h3)
      .. bit.tohex(h4) .. bit.tohex(h5) .. bit.tohex(h6) .. bit.tohex(h7)
end

local function starts(s, prefix)
  return s:sub(1, #prefix) == prefix
end

-- The envelope an error reply is written in, by the API family of the path (the endpoint table's,
-- rendered into CONFIG.reply_shapes as Python and Envoy's local replies read it); "both" elsewhere.
local function shape_of(bare)
  for _, family in ipairs(CONFIG.reply_shapes) do
    if bare == family.prefix or starts(bare, family.prefix .. "/") then
      return family.shape
    end
  end
  return "both"
end

local function refuse(handle, reason, path, detail)
  local reply = CONFIG.replies[reason]
  local body = reply.bodies[shape_of(path:match("^[^?]*"))]
  if detail then
    body = body:gsub("%%DETAIL%%", (detail:sub(1, 200):gsub("[\"\\%%%c]", "")))
  end
  handle:respond({[":status"] = reply.status, ["content-type"] = "application/json"}, body)
end

local function seal(headers)
  local internal = {}
  for name, _ in pairs(headers) do
    if starts(name, NAMES.internal_prefix) or starts(name, "x-envoy-") then
      internal[#internal + 1] = name
    end
  end
  return internal
end

-- Anthropic's credentials, an `sk-ant-` key or a Claude login's bearer token (`sk-ant-oat…`), never
-- reach a provider of another vendor: removed on bypassed routes to one (the route's metadata says so).
local function drop_anthropic_credentials(headers)
  local prefix = CONFIG.anthropic_key_prefix
  local key = headers:get("x-api-key")
  if key and starts(key, prefix) then
    headers:remove("x-api-key")
  end
  local auth = headers:get("authorization")
  if auth and auth:sub(1, 7):lower() == "bearer " and starts(auth:sub(8):match("^%s*(.*)$"), prefix) then
    headers:remove("authorization")
  end
end

local function presented_key(headers)
  local key = headers:get(NAMES.key)
  if key then
    return key, NAMES.key
  end
  key = headers:get("x-api-key")
  if key then
    return key, "x-api-key"
  end
  local auth = headers:get("authorization")
  if auth and auth:sub(1, 7):lower() == "bearer " then
    return auth:sub(8), "authorization"
  end
  return nil, nil
end

-- Pages served from this machine (http://localhost:3000, ...) may call the gateway; others may not.
local function allowed_origin(origin)
  origin = origin:lower()
  if CONFIG.any_origin or CONFIG.origins[origin] then
    return true
  end
  local host = origin:match("^https?://([^/]+)$")
  if not host then
    return false  -- includes "null" (sandboxed frames, file://)
  end
  host = host:gsub(":%d+$", "")
  return host == "localhost" or host == "127.0.0.1" or host == "[::1]"
end

-- What a browser could send cross-site without a CORS preflight (which the gateway never grants).
local function cross_site(headers)
  local origin = headers:get("origin")
  if origin and not allowed_origin(origin) then
    return origin
  end
  if headers:get("sec-fetch-site") == "cross-site" and not CONFIG.any_origin then
    return "a cross-site page"
  end
  return nil
end

local function is_json(content_type)
  if not content_type then
    return false
  end
  local media = content_type:lower():match("^%s*([^;%s]+)")
  return media == "application/json" or (media ~= nil and media:sub(-5) == "+json")
end

-- A request the fast path (envoy/fast.lua, after json_to_metadata) may decide without Python, judged
-- on headers alone; only candidates have their body parsed there.
local function mark_candidate(headers, bare, method, entry)
  if method ~= "POST" or not CONFIG.fast_paths[bare] or (entry and entry.models_limited) then
    return
  end
  if headers:get("x-provider") or headers:get("x-model") then
    return  -- preferences or a model override: Python decides
  end
  local length = tonumber(headers:get("content-length") or "")
  if length and length <= CONFIG.fast_max_bytes then
    headers:replace(NAMES.candidate, "1")
  end
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or "/"
  local bare = path:match("^[^?]*")
  local method = headers:get(":method") or "GET"
  local key, key_header = presented_key(headers)

  for _, name in ipairs(seal(headers)) do
    headers:remove(name)
  end

  if CONFIG.probes[bare] and (method == "GET" or method == "HEAD") then
    return
  end
  local origin = cross_site(headers)
  if origin then
    return refuse(handle, "origin", path, origin)
  end
  local has_body = (headers:get("content-length") or "0") ~= "0" or headers:get("transfer-encoding") ~= nil
  if has_body then
    for _, prefix in ipairs(CONFIG.json_paths) do
      if (bare == prefix or starts(bare, prefix .. "/")) and not is_json(headers:get("content-type")) then
        return refuse(handle, "content_type", path, nil)
      end
    end
  end

  if handle:metadata():get(NAMES.drop_anthropic_key) then
    drop_anthropic_credentials(headers)
  end

  -- Session records keep the client's network (anonymised in Python); bypassed routes never reach
  -- Python, which removes the header, so they never get it.
  if CONFIG.record_peer and not handle:metadata():get(NAMES.provider_key) then
    headers:replace(NAMES.peer, handle:streamInfo():downstreamRemoteAddress())
  end
  if not CONFIG.keys_required then
    return mark_candidate(headers, bare, method, nil)
  end
  if not key then
    return refuse(handle, "no_key", path, nil)
  end
  local entry = #key <= 512 and CONFIG.keys[sha256_hex(key)]
  if not entry then
    return refuse(handle, "bad_key", path, nil)
  end
  -- The gateway key is the gateway's: it never reaches a provider, in whichever headers it came.
  headers:remove(key_header)
  for _, name in ipairs({"x-api-key", "authorization"}) do
    local value = headers:get(name)
    if value and name == "authorization" and value:sub(1, 7):lower() == "bearer " then
      value = value:sub(8)
    end
    if value and #value <= 512 and CONFIG.keys[sha256_hex(value)] then
      headers:remove(name)
    end
  end
  headers:replace(NAMES.client, entry.name)
  handle:streamInfo():dynamicMetadata():set(NAMES.namespace, NAMES.client_key, entry.name)  -- for the access log
  if entry.scope then
    headers:replace(NAMES.scope, entry.scope)
    -- for the fast path (envoy/fast.lua): which providers this key may use
    if entry.provider_list then
      handle:streamInfo():dynamicMetadata():set(NAMES.namespace, NAMES.providers_key, entry.provider_list)
    end
  end
  -- Bypassed routes never reach Python: their provider is checked here (route metadata names it).
  local bypass_to = handle:metadata():get(NAMES.provider_key)
  if bypass_to and entry.providers and not entry.providers[bypass_to] then
    return refuse(handle, "provider", path, bypass_to)
  end
  if bypass_to and entry.models_limited then
    return refuse(handle, "models_only", path, bare)  -- a bypassed API's model is not checked anywhere
  end
  mark_candidate(headers, bare, method, entry)
end
