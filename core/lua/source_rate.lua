-- take_rate(): GCRA check-and-take of a source's event posts on Redis's clock, for every
-- script that takes (source_rate_take, ingest): 0 if `cost` fits now, else the wait in ms
-- (nothing taken). `key` holds the theoretical arrival time in ms (keys.source_rate).
local function take_rate(key, interval, burst, cost)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  -- fits if the bucket has room for the cost (for a cost above the burst: a full bucket); the
  -- whole cost is charged, so a big batch makes the posts after it wait in proportion
  local over = tat + math.min(cost, burst) * interval - now - burst * interval
  if over > 0 then return math.ceil(over) end
  local new_tat = tat + cost * interval
  redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
  return 0
end
