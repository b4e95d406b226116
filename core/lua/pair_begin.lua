-- A pair job's run begins: if its job is still the pair's, take the lease and read what is
-- pending with the pair's context (core.pairs.PairQueue.begin).
-- KEYS: pair, lease, pending, applied, links, profile.
-- ARGV: job id, lease token, lease ms, most refs to read, target, the event key prefix.
-- A lease held by a worker whose heartbeat is gone (killed) is taken over at once: the reply
-- then ends with the token it replaced.
if redis.call('HGET', KEYS[1], '${PAIR_JOB}') ~= ARGV[1] then return {'stale'} end
local replaced = false
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  local current = redis.call('GET', KEYS[2])
  local holder = current and string.match(current, ':(%x+)/%x+$$')
  if not holder or redis.call('EXISTS', '${HEARTBEAT_PREFIX}' .. holder) == 1 then
    return {'busy', redis.call('PTTL', KEYS[2])}
  end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  replaced = current
end
local refs = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[4]) - 1, 'WITHSCORES')
if #refs == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', '${OWED_PAIRS}', KEYS[3])
  return {'idle'}
end
local target = ARGV[5]
local events = {}
for i = 1, #refs, 2 do
  events[#events + 1] = redis.call(
    'HMGET', ARGV[6] .. refs[i], '${EVENT_BODY}', '${EVENT_RECEIVED_AT}',
    '${EVENT_STATUS_PREFIX}' .. target, '${EVENT_HISTORY_PREFIX}' .. target)
end
return {'ok', refs, events, redis.call('HGETALL', KEYS[4]), redis.call('HGET', KEYS[5], target),
        redis.call('HMGET', KEYS[6], ${PROFILE_PARTS}),
        redis.call('HMGET', KEYS[1], '${PAIR_SLOT}', '${PAIR_ISOLATE}', '${PAIR_URGENT}'),
        replaced}
