-- How many members of a sorted set start with a prefix (a source filter's total),
-- atomically (core.dead_letters.DeadLetters.page). KEYS: the set. ARGV: the prefix.
local n, i, step = 0, 0, 1000
local prefix = ARGV[1]
while true do
  local members = redis.call('ZRANGE', KEYS[1], i, i + step - 1)
  for _, m in ipairs(members) do
    if string.sub(m, 1, #prefix) == prefix then n = n + 1 end
  end
  if #members < step then return n end
  i = i + step
end
