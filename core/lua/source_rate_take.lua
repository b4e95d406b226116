-- GCRA check-and-take of a source's event posts on Redis's clock
-- (core.source_rate.SourceRates.take): 0 if the cost fits now, else the wait in ms.
-- KEYS: the source's rate key. ARGV: interval ms, burst, cost.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
-- fits if the bucket has room for the cost (for a cost above the burst: a full bucket); the
-- whole cost is charged, so a big batch makes the posts after it wait in proportion
local over = tat + math.min(cost, burst) * interval - now - burst * interval
if over > 0 then return math.ceil(over) end
local new_tat = tat + cost * interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return 0
