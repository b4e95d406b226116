-- Shared by permit and record: Redis's clock in ms, and the rate factor now (a 429 halves
-- it; it climbs back linearly over the recovery time). Python twin: _current_factor.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function current_factor(factor, factor_at, now, recovery)
  if not factor then return 1 end
  factor, factor_at = tonumber(factor), tonumber(factor_at)
  return math.min(1, factor + (1 - factor) * math.max(0, now - factor_at) / recovery)
end
