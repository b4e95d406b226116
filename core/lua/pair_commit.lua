--!include pair_schedule
-- A pair job's run ends: everything it writes, fenced by its lease token, and the pair's next
-- job (core.pairs.PairQueue.commit).
-- KEYS: pair, pending, applied, lease, arq queue, job sequence, dead letters, the target's
-- dead letters, the target's held jobs, the target's waiting set (a ref leaves it with the
-- pending set).
-- ARGV: token, now, ttl, job prefix, job payload, arq job key prefix, event key prefix,
-- target, mode, at, slot, isolate, held, n updates, then 5 per update, then n applied, then 2
-- per applied field, then whether the run was urgent.
local final_states = {}
for _, state in ipairs({${FINAL_STATES}}) do final_states[state] = true end
-- whether every target of the event is delivered, skipped or dead (its statuses are JSON)
local function all_final(event_key)
  local fields = redis.call('HGETALL', event_key)
  local prefix = '${EVENT_STATUS_PREFIX}'
  for f = 1, #fields, 2 do
    if string.sub(fields[f], 1, #prefix) == prefix
        and not final_states[cjson.decode(fields[f + 1])['status']] then
      return false
    end
  end
  return true
end
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 'lost' end
local now, ttl, target = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[8]
local i = 15
local dead = false
for u = 1, tonumber(ARGV[14]) do
  local ref, status, history, remove, is_dead = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  i = i + 5
  local event_key = ARGV[7] .. ref
  if status ~= '' and redis.call('EXISTS', event_key) == 1 then
    redis.call('HSET', event_key, '${EVENT_STATUS_PREFIX}' .. target, status,
               '${EVENT_HISTORY_PREFIX}' .. target, history)
    -- retention runs from the event's last final target: never while one still owes it
    if all_final(event_key) then redis.call('PEXPIRE', event_key, ttl)
    else redis.call('PERSIST', event_key) end
  end
  -- indexed even when the event is gone (it expired: the dead letter shows `expired`)
  if is_dead == '1' then
    redis.call('ZADD', KEYS[7], now, ref .. '${DEAD_LETTER_SEPARATOR}' .. target)
    redis.call('ZADD', KEYS[8], now, ref .. '${DEAD_LETTER_SEPARATOR}' .. target)
    dead = true
  end
  if remove == '1' then
    redis.call('ZREM', KEYS[2], ref)
    redis.call('ZREM', KEYS[10], ref)
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SREM', '${OWED_PAIRS}', KEYS[2]) end
if dead then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - ttl)
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now - ttl)
end
local n_applied = tonumber(ARGV[i]); i = i + 1
for a = 1, n_applied do
  local current = redis.call('HGET', KEYS[3], ARGV[i])
  if not current or tonumber(ARGV[i+1]) > tonumber(current) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i+1])
  end
  i = i + 2
end
if n_applied > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
if ARGV[11] == '-' then redis.call('HDEL', KEYS[1], '${PAIR_SLOT}')
elseif ARGV[11] ~= '' then redis.call('HSET', KEYS[1], '${PAIR_SLOT}', ARGV[11]) end
if ARGV[12] == '0' then redis.call('HDEL', KEYS[1], '${PAIR_ISOLATE}')
elseif ARGV[12] ~= '' then redis.call('HSET', KEYS[1], '${PAIR_ISOLATE}', ARGV[12]) end
local mode = ARGV[9]
-- the last argument: '1' if the run read the pair as urgent; an urgent change that came in
-- while a normal run ran makes the pair's next job urgent and due now, whatever it waited for
if mode == 'at' and ARGV[#ARGV] ~= '1' and redis.call('HEXISTS', KEYS[1], '${PAIR_URGENT}') == 1 then
  schedule(KEYS[1], ARGV[4], ARGV[5], now, KEYS[5], KEYS[6], ARGV[6], true)
elseif mode == 'at' then
  local at = tonumber(ARGV[10])
  local id = schedule(KEYS[1], ARGV[4], ARGV[5], at, KEYS[5], KEYS[6], ARGV[6])
  if ARGV[13] == '1' then
    redis.call('ZADD', KEYS[9], at, id)
    -- jobs long due have run (and re-listed themselves if still held): keep the set small
    redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now - 60000)
  end
elseif mode == 'next' then
  if redis.call('ZCARD', KEYS[2]) > 0 then
    schedule(KEYS[1], ARGV[4], ARGV[5], now, KEYS[5], KEYS[6], ARGV[6],
             redis.call('HEXISTS', KEYS[1], '${PAIR_URGENT}') == 1)
  else
    redis.call('DEL', KEYS[1])
  end
end
redis.call('DEL', KEYS[4])
return 'ok'
