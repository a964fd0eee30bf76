-- features.lua: wrk script for bench/features.sh. Each request asks for
-- GET /v1/features/{i}. MODE random draws i uniformly from 0 .. D_SAE-1 (a
-- fixed seed per thread, so runs are repeatable); MODE cold walks a
-- permutation of 0 .. D_SAE-1 (i = 7919 k mod D_SAE, a prime stride), so on
-- a fresh daemon with one wrk thread no feature is asked for twice until
-- D_SAE requests have been made: every reply is rendered from the index.
-- done() prints the requests made and the statuses seen, so a run of 404s
-- or 500s cannot pass for a fast one:
--   FEATURES_JSON {"requests": n, "non200": k}
--
--   wrk ... -s bench/features.lua URL -- D_SAE [random|cold]

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  d_sae = tonumber(args[1]) or 1
  cold = args[2] == "cold"
  math.randomseed(12345 + id)
  n, bad, k = 0, 0, 0
end

function request()
  local i
  if cold then
    i = (7919 * k) % d_sae
    k = k + 1
  else
    i = math.random(0, d_sae - 1)
  end
  return wrk.format("GET", "/v1/features/" .. i)
end

function response(status, headers, body)
  n = n + 1
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total, nonok = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("n")
    nonok = nonok + t:get("bad")
  end
  io.write(string.format('FEATURES_JSON {"requests": %d, "non200": %d}\n', total, nonok))
end
