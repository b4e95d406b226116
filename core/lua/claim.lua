-- Claim the due, free jobs of one poll, as arq claims one (workers.claim.ClaimingWorker):
-- arq's keys only. KEYS: the arq queue. ARGV: now, in-progress ms, arq's in-progress key
-- prefix, free slots, then the job ids. Reply: id and score of each claimed job.
local now, ttl, prefix, free = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local claimed = {}
for i = 5, #ARGV do
  if #claimed >= 2 * free then break end
  local id = ARGV[i]
  local key = prefix .. id
  if redis.call('EXISTS', key) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', key, ttl, '1')
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
