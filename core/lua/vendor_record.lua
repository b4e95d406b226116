--!include vendor_factor
-- How a call to the vendor instance went (core.vendor_guard.VendorGuard.record).
-- KEYS: vendor, probe, held, arq queue. ARGV: now ('' for Redis's clock), outcome, failure
-- threshold, cool-down ms, max cool-down ms, Retry-After ms, recovery ms, token, least rate
-- factor, then usage counter and value pairs.
local now, outcome = tonumber(ARGV[1]) or clock_ms(), ARGV[2]
local probe_mine = redis.call('GET', KEYS[2]) == ARGV[8]
if probe_mine then redis.call('DEL', KEYS[2]) end
-- the reply says whether the circuit changed (the caller logs it): {'circuit_closed', failures
-- before, cool-down ms}, {'circuit_opened', failures, cool-down ms, 1 if a probe failed}, or
-- {'none'}
local transition = {'none'}
if outcome == 'success' or outcome == 'refused' then
  if tonumber(redis.call('HGET', KEYS[1], '${VENDOR_OPEN_UNTIL}') or '0') > 0 then
    -- the circuit closes: pairs held off by it run now, not at the end of their wait
    for _, job in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      redis.call('ZADD', KEYS[4], 'XX', now, job)
    end
    redis.call('DEL', KEYS[3])
    local was = redis.call('HMGET', KEYS[1], '${VENDOR_FAILURES}', '${VENDOR_COOLDOWN}')
    transition = {'circuit_closed', tonumber(was[1] or '0'), tonumber(was[2] or '0')}
  end
  redis.call('HSET', KEYS[1], '${VENDOR_FAILURES}', 0, '${VENDOR_OPEN_UNTIL}', 0,
             '${VENDOR_COOLDOWN}', 0)
elseif outcome == 'failure' then
  local failures = redis.call('HINCRBY', KEYS[1], '${VENDOR_FAILURES}', 1)
  local open_until = tonumber(redis.call('HGET', KEYS[1], '${VENDOR_OPEN_UNTIL}') or '0')
  if probe_mine or (open_until == 0 and failures >= tonumber(ARGV[3])) then
    local cooldown = tonumber(redis.call('HGET', KEYS[1], '${VENDOR_COOLDOWN}') or '0')
    if cooldown == 0 then cooldown = tonumber(ARGV[4])
    elseif probe_mine then cooldown = math.min(cooldown * 2, tonumber(ARGV[5])) end
    redis.call('HSET', KEYS[1], '${VENDOR_OPEN_UNTIL}', now + cooldown,
               '${VENDOR_COOLDOWN}', cooldown)
    redis.call('HINCRBY', KEYS[1], '${VENDOR_OPENED}', 1)
    transition = {'circuit_opened', failures, cooldown, probe_mine and 1 or 0}
  end
elseif outcome == 'throttled' then
  local v = redis.call('HMGET', KEYS[1], '${VENDOR_FACTOR}', '${VENDOR_FACTOR_AT}')
  local factor = current_factor(v[1], v[2], now, tonumber(ARGV[7]))
  factor = math.max(tonumber(ARGV[9]), factor / 2)
  redis.call('HSET', KEYS[1], '${VENDOR_FACTOR}', string.format('%.4f', factor),
             '${VENDOR_FACTOR_AT}', now)
  redis.call('HINCRBY', KEYS[1], '${VENDOR_THROTTLED}', 1)
  if ARGV[6] ~= '' then
    local until_ms = now + tonumber(ARGV[6])
    if until_ms > tonumber(redis.call('HGET', KEYS[1], '${VENDOR_PAUSED_UNTIL}') or '0') then
      redis.call('HSET', KEYS[1], '${VENDOR_PAUSED_UNTIL}', until_ms)
    end
  end
end
redis.call('HINCRBY', KEYS[1], '${VENDOR_CALLS_PREFIX}' .. outcome, 1)
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[1], '${VENDOR_USAGE_PREFIX}' .. ARGV[i], ARGV[i + 1])
end
return transition
