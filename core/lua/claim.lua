-- Claim the due, free jobs of one poll, as arq claims one (workers.claim.ClaimingWorker):
-- arq's keys, and the workers' heartbeats. KEYS: the arq queue. ARGV: now, in-progress ms,
-- arq's in-progress key prefix, free slots, this worker's id, then the job ids. Reply: id and
-- score of each claimed job. The in-progress key holds the claiming worker's id (arq only
-- checks it exists): a job claimed by a worker whose heartbeat is gone (killed) is free.
local now, ttl, prefix, free = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local claimed = {}
for i = 6, #ARGV do
  if #claimed >= 2 * free then break end
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
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
