-- Clear a user's ordering state, unless a chosen pair has a call in flight
-- (core.ordering.reset_ordering).
-- KEYS: the user's profile, then for each vendor instance its pair's applied hash and lease.
-- ARGV: '1' to clear the profile's order fields.
local pairs = (#KEYS - 1) / 2
local busy, wait = {}, 0
for i = 1, pairs do
  local ttl = redis.call('PTTL', KEYS[2 * i + 1])
  if ttl ~= -2 then
    busy[#busy + 1] = i
    wait = math.max(wait, ttl)
  end
end
if #busy > 0 then return {'busy', busy, wait} end
local cleared = {}
for i = 1, pairs do
  cleared[i] = redis.call('HLEN', KEYS[2 * i])
  redis.call('DEL', KEYS[2 * i])
end
local profile = 0
if ARGV[1] == '1' then
  local prefix = '${PROFILE_ORDER_PREFIX}'
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, #prefix) == prefix then
      redis.call('HDEL', KEYS[1], name)
      profile = profile + 1
    end
  end
end
return {'ok', cleared, profile}
