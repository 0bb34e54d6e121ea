-- LunaRoute's spent-budget refusals on the fast path: Envoy answers 429 itself, no worker involved.
--
-- Runs after envoy/fast.lua, which names the provider it picked in `x-lunaroute-fast` (a header only
-- the fast path can set: the gate removes a client's). Requests the fast path did not pick go on to the
-- workers, which reserve before they forward and refuse spent budgets themselves.
--
-- SPENT (prepended by extproc/envoy_config/spent.py) is rewritten by the workers (extproc/spent.py)
-- whenever the set of spent budgets changes, and delivered like the gate (a file Envoy watches):
--   scopes["<gateway key>|<provider>"] = {budget = <name>, resets = <epoch seconds>,
--                                         bodies = {<dialect> = <429 body>}}
-- (the key is "" without gateway keys); `dialects` maps each fast path to the dialect of its errors.

local NAMES = SPENT.names

function envoy_on_request(handle)
  if SPENT.empty then
    return
  end
  local headers = handle:headers()
  local provider = headers:get(NAMES.fast)
  if provider == nil then
    return
  end
  local entry = SPENT.scopes[(headers:get(NAMES.client) or "") .. "|" .. provider]
  if entry == nil then
    return
  end
  local wait = entry.resets - os.time()
  if wait <= 0 then
    return  -- its period is over; the workers drop it on their next pass
  end
  -- the access log tells the workers, which count the refusal
  handle:streamInfo():dynamicMetadata():set(NAMES.namespace, NAMES.refused_key, entry.budget)
  local path = (headers:get(":path") or ""):match("^[^?]*")
  handle:respond({[":status"] = "429", ["content-type"] = "application/json", ["retry-after"] = tostring(wait)},
    entry.bodies[SPENT.dialects[path] or "both"])
end
