--!include vendor_factor
-- May the vendor instance be called now? Breaker, then pause, then rate
-- (core.vendor_guard.VendorGuard.permit).
-- KEYS: vendor, probe. ARGV: now ('' for Redis's clock), per second, burst, reserved slot,
-- probe ms, recovery ms, token, '1' for an urgent call.
-- An urgent call behind a backlog takes the urgent lane's next slot (urgent calls spaced by
-- the rate) instead of one after every reserved slot, and a normal reserved slot that comes
-- due later is given up for it (`owed`): that pair reserves again at the end, the rate holds.
local now = tonumber(ARGV[1]) or clock_ms()
local v = redis.call('HMGET', KEYS[1], '${VENDOR_OPEN_UNTIL}', '${VENDOR_PAUSED_UNTIL}',
                     '${VENDOR_TAT}', '${VENDOR_FACTOR}', '${VENDOR_FACTOR_AT}',
                     '${VENDOR_FAILURES}', '${VENDOR_COOLDOWN}', '${VENDOR_OWED}',
                     '${VENDOR_URGENT_TAT}')
local urgent = ARGV[8] == '1'
local owed = tonumber(v[8] or '0')
local probing = false
local open_until = tonumber(v[1] or '0')
if open_until > 0 then
  if now < open_until then return {'open', math.ceil(open_until - now)} end
  if not redis.call('SET', KEYS[2], ARGV[7], 'NX', 'PX', ARGV[5]) then
    return {'open', math.max(200, redis.call('PTTL', KEYS[2]))}
  end
  probing = true
end
-- a probe is the circuit going half-open: the caller logs it, with the breaker's state
local function granted()
  if probing then return {'probe', 0, '', v[6] or '0', v[7] or '0'} end
  return {'go', 0}
end
local paused = tonumber(v[2] or '0')
if paused > now then
  if probing then redis.call('DEL', KEYS[2]) end
  return {'paused', math.ceil(paused - now)}
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) <= now + 5 then
  if urgent or owed <= 0 then return granted() end
  owed = owed - 1  -- an urgent call had this slot: reserve again, below
  redis.call('HSET', KEYS[1], '${VENDOR_OWED}', owed)
end
local factor = current_factor(v[4], v[5], now, tonumber(ARGV[6]))
local interval = 1000 / (tonumber(ARGV[2]) * factor)
if owed > 0 and tonumber(v[3] or '0') <= now then  -- no backlog left to give slots back
  redis.call('HDEL', KEYS[1], '${VENDOR_OWED}')
end
local tat = math.max(tonumber(v[3] or '0'), now)
local slot = math.max(now, tat - (tonumber(ARGV[3]) - 1) * interval)
if urgent and slot > now then
  local lane = math.max(now, tonumber(v[9] or '0'))
  redis.call('HSET', KEYS[1], '${VENDOR_URGENT_TAT}', string.format('%.3f', lane + interval))
  redis.call('HINCRBY', KEYS[1], '${VENDOR_OWED}', 1)
  if lane > now then
    if probing then redis.call('DEL', KEYS[2]) end
    return {'rate', math.ceil(lane - now), string.format('%d', math.ceil(lane))}
  end
  return granted()
end
redis.call('HSET', KEYS[1], '${VENDOR_TAT}', string.format('%.3f', tat + interval))
if slot > now then
  if probing then redis.call('DEL', KEYS[2]) end
  return {'rate', math.ceil(slot - now), string.format('%d', math.ceil(slot))}
end
return granted()
