-- LunaRoute's refusals of spent budgets and full token windows: Envoy answers 429 itself, no worker
-- involved.
--
-- Runs after envoy/fast.lua, which names the provider it picked in `x-lunaroute-fast` (a header only
-- the fast path can set: the gate removes a client's), and reads the gate's `x-lunaroute-client`.
-- A key whose token window is full is refused on every request; budgets and provider windows refuse
-- fast-path requests (requests for the workers are checked by them before they forward).
--
-- SPENT (prepended by extproc/envoy_config/spent.py) is rewritten by the workers (extproc/spent.py)
-- whenever what is spent changes, and delivered like the gate (a file Envoy watches):
--   scopes["<key>|<provider>"] = entry  (key "" without gateway keys, "*" any; provider "*" any)
--   models["<provider>"] = {entry with `pattern` (a Lua pattern of the model glob), ...}
--   entry = {budget = <name or "tpm">, resets = <epoch s>, limit = <tpm>?, bodies = {<dialect> = <body>}}
-- `dialects` maps each fast path to the dialect of its errors (others get the envelope both SDKs read).

local NAMES = SPENT.names

local function model_entry(handle, provider)
  local entries = SPENT.models[provider]
  if entries == nil then
    return nil
  end
  local model = (handle:streamInfo():dynamicMetadata():get(NAMES.body_namespace) or {})[NAMES.model_key]
  if type(model) ~= "string" then
    return nil
  end
  for _, entry in ipairs(entries) do
    if model:find(entry.pattern) then
      return entry
    end
  end
  return nil
end

local function refusal(handle, headers)
  local client = headers:get(NAMES.client) or ""
  local entry = SPENT.scopes[client .. "|*"]
  local provider = headers:get(NAMES.fast)
  if entry == nil and provider ~= nil then
    entry = SPENT.scopes[client .. "|" .. provider] or SPENT.scopes["*|" .. provider]
        or model_entry(handle, provider)
  end
  return entry
end

function envoy_on_request(handle)
  if SPENT.empty then
    return
  end
  local headers = handle:headers()
  local entry = refusal(handle, headers)
  if entry == nil then
    return
  end
  local wait = entry.resets - os.time()
  if wait <= 0 then
    return  -- its period is over; the workers drop it on their next pass
  end
  -- the access log tells the workers, which count the refusal
  handle:streamInfo():dynamicMetadata():set(NAMES.namespace, NAMES.refused_key, entry.budget)
  local reply = {[":status"] = "429", ["content-type"] = "application/json", ["retry-after"] = tostring(wait)}
  if entry.limit then
    reply["x-ratelimit-limit"], reply["x-ratelimit-remaining"], reply["x-ratelimit-reset"] =
        entry.limit, "0", tostring(wait)
  end
  local path = (headers:get(":path") or ""):match("^[^?]*")
  handle:respond(reply, entry.bodies[SPENT.dialects[path] or "both"])
end
