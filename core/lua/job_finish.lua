-- An arq job's end, as arq's Worker.finish_job writes it for a job that keeps no result
-- (workers.claim.ClaimingWorker, sent with other jobs' calls in one pipeline).
-- KEYS: the arq queue, arq's abort set, the job's in-progress, retry and job keys.
-- ARGV: the job id, '1' if the job is finished (else it stays queued), the score to add
-- ('' for none: it runs again as soon as it is claimed).
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
if ARGV[3] ~= '' then redis.call('ZINCRBY', KEYS[1], ARGV[3], ARGV[1]) end
redis.call('DEL', KEYS[3])
return 0
