--!include pair_schedule
--!include source_rate
-- One accepted event, all or nothing (core.store.Store): the source's rate, the dedupe check,
-- the event with each target's status, its place in each target's pending and waiting sets,
-- the pairs' jobs, links, name parts. Few commands: each call from Lua costs Redis more than
-- the work it does (a write is also copied to the AOF), so a command takes every value it can.
-- ARGV: the acceptance answer, the event's JSON, then everything else as one JSON array
-- (one argument instead of dozens: packing each argument costs the client more than Redis
-- takes to decode them): received_at, ttl, now, ref, order, arq's job key prefix, targets
-- [[name, job prefix, job], ...], links [[vendor, id], ...], name parts
-- [[part, value, clear], ...], the source, its link mode, the pending status, urgent
-- (core.event.Event.urgent, read by the gateway), the source's rate (interval ms and burst;
-- interval 0: not taken here). KEYS: event, links, profile, queue, job sequence, link
-- setters, the source's rate, then each target's pair, pending set and waiting set (its
-- backlog, for /metrics: scored by `now`).
local a = cjson.decode(ARGV[3])
local received_at, ttl, now, ref, order, job_key_prefix = a[1], a[2], a[3], a[4], a[5], a[6]
local targets, links, parts, source, link_mode = a[7], a[8], a[9], a[10], a[11]
local pending_status, urgent, rate_interval, rate_burst = a[12], a[13], a[14], a[15]
-- The source's rate first, as a separate take did before the event was read (it counts every
-- post, a duplicate too); refused: nothing is stored.
if rate_interval > 0 then
  local wait = take_rate(KEYS[7], rate_interval, rate_burst, 1)
  if wait > 0 then return {'rate_limited', tostring(wait)} end
end
local existing = redis.call('HGET', KEYS[1], '${EVENT_ACCEPTED}')
if existing then return existing end
-- Links are checked before anything is written: under link mode 'create', a link that holds
-- another id refuses the whole event ({'link_conflict', vendor, current id, ...}).
local old = {}
if #links > 0 then
  local vendors = {}
  for l = 1, #links do vendors[l] = links[l][1] end
  old = redis.call('HMGET', KEYS[2], unpack(vendors))
end
local conflicts = {'link_conflict'}
for l = 1, #links do
  if link_mode == 'create' and old[l] and old[l] ~= links[l][2] then
    conflicts[#conflicts + 1] = links[l][1]
    conflicts[#conflicts + 1] = old[l]
  end
end
if #conflicts > 1 then return conflicts end
local fields = {'${EVENT_ACCEPTED}', ARGV[1], '${EVENT_BODY}', ARGV[2],
                '${EVENT_RECEIVED_AT}', received_at}
local owed = {}
for t = 1, #targets do
  fields[#fields + 1] = '${EVENT_STATUS_PREFIX}' .. targets[t][1]
  fields[#fields + 1] = pending_status
  owed[t] = KEYS[6 + 3 * t]
end
redis.call('HSET', KEYS[1], unpack(fields))
if #targets > 0 then redis.call('SADD', '${OWED_PAIRS}', unpack(owed)) end
-- urgent: the pairs' jobs go ahead of normal ones, now
for t = 1, #targets do
  local target = targets[t]
  local pair = KEYS[5 + 3 * t]
  redis.call('ZADD', KEYS[6 + 3 * t], order, ref)
  redis.call('ZADD', KEYS[7 + 3 * t], now, ref)
  local job = redis.call('HGET', pair, '${PAIR_JOB}')
  if urgent then redis.call('HSET', pair, '${PAIR_URGENT}', '1') end
  if not job then
    schedule(pair, target[2], target[3], now, KEYS[4], KEYS[5], job_key_prefix, urgent)
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
local set_links, setters = {}, {}
for l = 1, #links do
  local vendor, id = links[l][1], links[l][2]
  if old[l] ~= id then
    set_links[#set_links + 1] = vendor
    set_links[#set_links + 1] = id
    setters[#setters + 1] = '${LINK_SET_BY_PREFIX}' .. vendor
    setters[#setters + 1] = source
    setters[#setters + 1] = '${LINK_SET_AT_PREFIX}' .. vendor
    setters[#setters + 1] = received_at
    if old[l] then
      changed[#changed + 1] = vendor
      changed[#changed + 1] = old[l]
    end
  end
end
if #set_links > 0 then
  redis.call('HSET', KEYS[2], unpack(set_links))
  redis.call('HSET', KEYS[6], unpack(setters))
end
if #parts > 0 then
  local order_value = tonumber(order)
  local order_fields = {}
  for p = 1, #parts do order_fields[p] = '${PROFILE_ORDER_PREFIX}' .. parts[p][1] end
  local current = redis.call('HMGET', KEYS[3], unpack(order_fields))
  local set, cleared = {}, {}
  for p = 1, #parts do
    local field, value, clear = parts[p][1], parts[p][2], parts[p][3]
    if not current[p] or order_value >= tonumber(current[p]) then
      if clear then cleared[#cleared + 1] = field
      else
        set[#set + 1] = field
        set[#set + 1] = value
      end
      set[#set + 1] = order_fields[p]
      set[#set + 1] = order
    end
  end
  if #cleared > 0 then redis.call('HDEL', KEYS[3], unpack(cleared)) end
  if #set > 0 then redis.call('HSET', KEYS[3], unpack(set)) end
end
if #changed > 1 then return changed end
return false
