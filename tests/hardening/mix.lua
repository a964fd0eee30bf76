-- mix.lua: wrk script for the load and reload tests. Each connection sends,
-- in turn, an encode (JSON body read from a file), a feature
-- (GET /v1/features/{i}) and a search (GET /v1/features?q=WORD&limit=10),
-- and counts the statuses it gets back; done() prints one line
--   HARDENING_JSON {"statuses": {...}, "errors": {...}, "requests": n, ...}
-- for tests/hardening/hardening.py.
--
--   wrk ... -s mix.lua URL -- BODY_FILE D_SAE WORDS [IDS]
--
-- D_SAE 0 means no index: encode requests only. WORDS is comma-separated.
-- IDS (comma-separated SAE ids, CONTRACT 7) spreads the requests over those
-- SAEs: /v1/saes/{id}/encode and /v1/saes/{id}/features/{i}, and the
-- searches go to /v1/search (every indexed SAE at once).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  d_sae = tonumber(args[2]) or 0
  words = {}
  for w in string.gmatch(args[3] or "", "[^,]+") do
    table.insert(words, w)
  end
  ids = {}
  for id in string.gmatch(args[4] or "", "[^,]+") do
    table.insert(ids, id)
  end
  counts = {}
  n = 0
  enc_headers = { ["Content-Type"] = "application/json" }
end

-- The route prefix of the n-th request: its SAE's, or none.
local function prefix(n)
  if #ids == 0 then
    return "/v1"
  end
  return "/v1/saes/" .. ids[math.floor(n / 3) % #ids + 1]
end

function request()
  n = n + 1
  local k = n % 3
  if d_sae == 0 or k == 0 or #words == 0 then
    return wrk.format("POST", prefix(n) .. "/encode", enc_headers, body)
  elseif k == 1 then
    return wrk.format("GET", prefix(n) .. "/features/" .. ((n * 7919) % d_sae))
  elseif #ids > 0 then
    return wrk.format("GET", "/v1/search?limit=10&q=" .. words[(n % #words) + 1])
  else
    return wrk.format("GET", "/v1/features?limit=10&q=" .. words[(n % #words) + 1])
  end
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for s, v in pairs(c) do
      total[s] = (total[s] or 0) + v
    end
  end
  local parts = {}
  for s, v in pairs(total) do
    table.insert(parts, string.format('"%d": %d', s, v))
  end
  local e = summary.errors
  io.write(string.format(
    'HARDENING_JSON {"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "status": %d}, "requests": %d, "duration_us": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\n',
    table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout, e.status,
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max))
end
