--!include pair_schedule
-- A dead letter goes back to its pair's pending set (core.pairs.PairQueue.replay): 1 done,
-- 0 not dead, -1 its event expired.
-- KEYS: event, pair, pending, dead letters, the target's dead letters, arq queue, job sequence,
-- the target's waiting set (the replayed event waits again, from now).
-- ARGV: dead-letter id, ref, target, order, status, job prefix, job payload, now, ttl, arq
-- job key prefix.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], '${EVENT_STATUS_PREFIX}' .. ARGV[3], ARGV[5])
redis.call('PERSIST', KEYS[1])  -- kept until its targets are final again (pair_commit)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('SADD', '${OWED_PAIRS}', KEYS[3])
redis.call('ZADD', KEYS[8], tonumber(ARGV[8]), ARGV[2])
if not redis.call('HGET', KEYS[2], '${PAIR_JOB}') then
  schedule(KEYS[2], ARGV[6], ARGV[7], tonumber(ARGV[8]), KEYS[6], KEYS[7], ARGV[10])
end
return 1
