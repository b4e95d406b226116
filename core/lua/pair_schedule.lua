-- schedule(): give a pair its next arq job, for every script that may (ingest, commit,
-- replay). The job is written in arq's own format (core.pairs.job_payload), with no TTL: arq
-- deletes it when the job ends, and a job key that expired while no worker ran would make arq
-- drop the job, leaving its pair with work and no job. Its score carries a fraction of a
-- millisecond from the job sequence (arq runs a job once its score is at most now, in whole
-- ms: at most 1 ms later).
-- An urgent pair's job due now is put ${URGENT_LEAD_MS} ms back: ahead of every normal job.
local function schedule(pair_key, job_prefix, payload, at, queue, seq, job_key_prefix, urgent)
  if urgent then at = at - tonumber('${URGENT_LEAD_MS}') end
  local n = redis.call('INCR', seq)
  local id = job_prefix .. n
  redis.call('SET', job_key_prefix .. id, payload)
  -- jobs of one millisecond are taken in score order, then by id, which sorts by vendor:
  -- a fraction of a ms from the sequence keeps them in the order they were scheduled, so a
  -- burst's jobs interleave its vendors instead of filling a poll with one vendor's
  redis.call('ZADD', queue, at + (n % 1000) / 1000, id)
  redis.call('HSET', pair_key, '${PAIR_JOB}', id)
  return id
end
