--!include pair_schedule
-- One accepted event, all or nothing (core.store.Store): the dedupe check, the event, each
-- target's status and place in its pair's pending set, the pairs' jobs, links, name parts.
local existing = redis.call('HGET', KEYS[1], '${EVENT_ACCEPTED}')
if existing then return existing end
-- ARGV: the acceptance answer, the event's JSON, then everything else as one JSON array
-- (one argument instead of dozens: packing each argument costs the client more than Redis
-- takes to decode them): received_at, ttl, now, ref, order, arq's job key prefix, targets
-- [[name, status, job prefix, job], ...], links [[vendor, id], ...], name parts
-- [[part, value, clear], ...], the source, its link mode. KEYS: event, links, profile,
-- queue, then pair and pending key of each target, then the job sequence, the link setters,
-- then each target's waiting set (its backlog, for /metrics: scored by `now`).
local a = cjson.decode(ARGV[3])
local received_at, ttl, now, ref, order, job_key_prefix = a[1], a[2], a[3], a[4], a[5], a[6]
local targets, links, parts, source, link_mode = a[7], a[8], a[9], a[10], a[11]
-- Links are checked before anything is written: under link mode 'create', a link that holds
-- another id refuses the whole event ({'link_conflict', vendor, current id, ...}).
local old = {}
local conflicts = {'link_conflict'}
for l = 1, #links do
  old[l] = redis.call('HGET', KEYS[2], links[l][1])
  if link_mode == 'create' and old[l] and old[l] ~= links[l][2] then
    conflicts[#conflicts + 1] = links[l][1]
    conflicts[#conflicts + 1] = old[l]
  end
end
if #conflicts > 1 then return conflicts end
redis.call('HSET', KEYS[1], '${EVENT_ACCEPTED}', ARGV[1], '${EVENT_BODY}', ARGV[2],
           '${EVENT_RECEIVED_AT}', received_at)
local seq = KEYS[#targets * 2 + 5]
-- urgent (core.event.Event.urgent): the pairs' jobs go ahead of normal ones, now
local decoded, body = pcall(cjson.decode, ARGV[2])
if not decoded or type(body) ~= 'table' then body = {} end
local urgent = body['priority'] == '${URGENT_PRIORITY}'
for _, urgent_type in ipairs({${URGENT_TYPES}}) do
  if body['type'] == urgent_type then urgent = true end
end
for t = 1, #targets do
  local target = targets[t]
  local pair, pending = KEYS[5 + 2 * (t - 1)], KEYS[6 + 2 * (t - 1)]
  redis.call('HSET', KEYS[1], '${EVENT_STATUS_PREFIX}' .. target[1], target[2])
  redis.call('ZADD', pending, order, ref)
  redis.call('SADD', '${OWED_PAIRS}', pending)
  redis.call('ZADD', KEYS[#targets * 2 + 6 + t], now, ref)
  local job = redis.call('HGET', pair, '${PAIR_JOB}')
  if urgent then redis.call('HSET', pair, '${PAIR_URGENT}', '1') end
  if not job then
    schedule(pair, target[3], target[4], now, KEYS[4], seq, job_key_prefix, urgent)
  elseif urgent then  -- the pair's job (waiting for a slot, a backoff) runs now, first
    redis.call('ZADD', KEYS[4], 'XX', now - tonumber('${URGENT_LEAD_MS}'), job)
  end
end
-- An event waiting for a target has no TTL: the commit that makes its last target final
-- sets it (pair_commit), so a backlog older than the retention loses nothing.
if #targets == 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
-- A link is written, with who set it and when, only when its id is new or different; the
-- reply names each changed one with its old id ({'changed', vendor, old id, ...}).
local changed = {'changed'}
local setters = KEYS[#targets * 2 + 6]
for l = 1, #links do
  local vendor, id = links[l][1], links[l][2]
  if old[l] ~= id then
    redis.call('HSET', KEYS[2], vendor, id)
    redis.call('HSET', setters, '${LINK_SET_BY_PREFIX}' .. vendor, source,
               '${LINK_SET_AT_PREFIX}' .. vendor, received_at)
    if old[l] then
      changed[#changed + 1] = vendor
      changed[#changed + 1] = old[l]
    end
  end
end
local order_value = tonumber(order)
for p = 1, #parts do
  local field, value, clear = parts[p][1], parts[p][2], parts[p][3]
  local current = redis.call('HGET', KEYS[3], '${PROFILE_ORDER_PREFIX}' .. field)
  if not current or order_value >= tonumber(current) then
    if clear then redis.call('HDEL', KEYS[3], field)
    else redis.call('HSET', KEYS[3], field, value) end
    redis.call('HSET', KEYS[3], '${PROFILE_ORDER_PREFIX}' .. field, order)
  end
end
if #changed > 1 then return changed end
return false
