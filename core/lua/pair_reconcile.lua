--!include pair_schedule
-- The reconciler's check of a batch of owed pairs (core.pairs.PairQueue.reconcile): a pair
-- whose pending set is empty leaves the owed set; a pair with work whose job is not in arq's
-- queue with its job key (dropped, deleted by hand, lost) gets a fresh job through
-- schedule(), as ingest gives one, and the pair's job field names it: a stray old job that
-- still ran would find itself stale. Reply: how many pairs were rescheduled.
-- KEYS: arq queue, job sequence. ARGV: now, arq job key prefix, then 4 per pair: its pending
-- key, pair key, job prefix, job payload.
local now, job_key_prefix = tonumber(ARGV[1]), ARGV[2]
local rescheduled = 0
for i = 3, #ARGV, 4 do
  local pending, pair, job_prefix, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('EXISTS', pending) == 0 then
    redis.call('SREM', '${OWED_PAIRS}', pending)
  else
    local job = redis.call('HGET', pair, '${PAIR_JOB}')
    if not job or not redis.call('ZSCORE', KEYS[1], job)
        or redis.call('EXISTS', job_key_prefix .. job) == 0 then
      schedule(pair, job_prefix, payload, now, KEYS[1], KEYS[2], job_key_prefix)
      rescheduled = rescheduled + 1
    end
  end
end
return rescheduled
