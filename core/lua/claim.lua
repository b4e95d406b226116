-- Claim the due, free jobs of one poll, as arq claims one (workers.claim.ClaimingWorker):
-- arq's keys, and the workers' heartbeats. KEYS: the arq queue. ARGV: now, in-progress ms,
-- arq's in-progress key prefix, free slots, this worker's id, arq's retry key prefix, the
-- retry key's TTL (s), arq's job key prefix, then the job ids. Reply: for each claimed job,
-- its id, score, try (arq's retry counter, incremented as arq's run_job does) and definition
-- (nil if its job key is gone), so its run reads nothing more before it starts. The
-- in-progress key holds the claiming worker's id (arq only checks it exists): a job claimed
-- by a worker whose heartbeat is gone (killed) is free.
local now, ttl, prefix, free = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local claimed = {}
for i = 9, #ARGV do
  if #claimed >= 4 * free then break end
  local id = ARGV[i]
  local key = prefix .. id
  local holder = redis.call('GET', key)
  if holder and string.match(holder, '^%x+$$') and #holder >= 16
      and redis.call('EXISTS', '${HEARTBEAT_PREFIX}' .. holder) == 0 then
    holder = false
  end
  if not holder then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', key, ttl, ARGV[5])
      local tries = redis.call('INCR', ARGV[6] .. id)
      redis.call('EXPIRE', ARGV[6] .. id, ARGV[7])
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
      claimed[#claimed + 1] = tries
      claimed[#claimed + 1] = redis.call('GET', ARGV[8] .. id)
    end
  end
end
return claimed
