-- health.lua: GET /v1/health through a Lua request() like bench/features.lua,
-- so wrk spends the same per request on both sides of bench/features.sh.
function request()
  return wrk.format("GET", "/v1/health")
end
