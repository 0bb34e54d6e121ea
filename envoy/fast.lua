-- LunaRoute's fast path: requests that need no decision never reach Python.
--
-- Runs after the gate and after envoy.filters.http.json_to_metadata (which put the body's top-level
-- `model` into the `lunaroute.body` metadata namespace, or `error` when the body is not JSON). When a
-- request's bytes hold no marker and no provider preferences, and the provider the model rules (or
-- the default) pick speaks the client's dialect with nothing else to do (no fallbacks, no budget, no
-- recording), it names that provider in `x-lunaroute-fast` and re-picks the route: the `fast/...`
-- routes send it there byte for byte with ext_proc off. Everything else goes on to ext_proc as before.
--
-- FAST (prepended by extproc/envoy_config/fast_path.py, from the same config and the same router code
-- the Python path uses) holds, per path, the rules in the router's order: a Lua pattern equivalent to
-- the rule's glob and its target ("" = Python decides), or `python = true` for rules only Python can
-- evaluate (regexes, glob character classes); then the default's target. `FAST.names` holds the header
-- and metadata names Envoy and Python share (from extproc/wire.py).

local function decide(routes, model)
  for _, rule in ipairs(routes.rules) do
    if rule.python then
      return ""  -- a rule Python must evaluate comes first: let Python decide
    end
    if model ~= nil and model:find(rule.pattern) then
      return rule.target
    end
  end
  return routes.default
end

local function count(bytes, key, value)
  local n = 0
  for _, sep in ipairs({'":"', '": "'}) do  -- compact JSON, and Python's / pretty printers'
    local needle, from = '"' .. key .. sep .. (value or ""), 1
    while true do
      local _, stop = bytes:find(needle, from, true)
      if stop == nil then
        break
      end
      n, from = n + 1, stop + 1
    end
  end
  return n
end

-- extproc.dialects.anthropic.may_need_fit, the same plain counts: a history from other providers
-- (unsigned thinking, foreign tool ids) that Python must fit before an Anthropic-type provider sees it.
local function may_need_fit(bytes)
  return count(bytes, "tool_use_id") > count(bytes, "tool_use_id", "toolu_")
    or count(bytes, "signature", '"') > 0
    or count(bytes, "thinking") > count(bytes, "signature")
end

-- Whether the body writes an ASCII letter as a JSON escape (\u0041-\u007f): plain searches for the
-- rare "\u00" first, since a Lua pattern scan of a 100 KB body costs over half a millisecond.
local function escapes_a_letter(bytes)
  local from = 1
  while true do
    local at = bytes:find("\\u00", from, true)
    if at == nil then
      return false
    end
    if bytes:sub(at + 4, at + 5):find("^[4-7]%x$") then
      return true
    end
    from = at + 4
  end
end

-- Only requests the gate marked as candidates get here (x-lunaroute-candidate: a POST to one of the
-- paths below, with a content-length up to FAST.max_bytes, no X-Provider / X-Model header, and no
-- gateway key limited to some models); this filter and json_to_metadata are skipped for all others.
function envoy_on_request(handle)
  local NAMES = FAST.names
  local routes = FAST.paths[(handle:headers():get(":path") or ""):match("^[^?]*")]
  local body = handle:body()  -- waits for the whole body; header objects taken before it expire
  if routes == nil or body == nil then
    return
  end
  local bytes = body:getBytes(0, body:length())
  -- a marker, or provider preferences anywhere: Python looks closer. JSON serializers never escape
  -- ASCII letters; a body that does (a key such as "pro\u0076ider") goes to Python too, whose parser
  -- reads it as it is meant. And only an object is a request.
  if bytes:find("[LUNAROUTE:", 1, true) or bytes:find('"provider"', 1, true) or escapes_a_letter(bytes)
      or not bytes:find("^%s*{") then
    return
  end
  if may_need_fit(bytes) then
    return  -- a conversation that went through other providers: Python fits it for Anthropic
  end
  local parsed = handle:streamInfo():dynamicMetadata():get(NAMES.body_namespace) or {}
  local model = parsed[NAMES.model_key]
  if parsed[NAMES.error_key] then
    return  -- not JSON: Python answers it
  end
  if model ~= nil and (type(model) ~= "string" or model:find("[\128-\255]")) then
    return  -- a model that is not a string, or non-ASCII (glob `?` counts characters)
  end
  local target = decide(routes, model)
  local gate = handle:streamInfo():dynamicMetadata():get(NAMES.namespace) or {}
  if target == "" or (gate[NAMES.providers_key] and not gate[NAMES.providers_key]:find("," .. target .. ",", 1, true)) then
    return
  end
  handle:headers():replace(NAMES.fast, target)
  handle:clearRouteCache()
end
