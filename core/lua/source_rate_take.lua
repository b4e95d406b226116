--!include source_rate
-- A source's event posts taken apart from their storage (core.source_rate.SourceRates.take:
-- batches, previews, SCIM): 0 if the cost fits now, else the wait in ms.
-- KEYS: the source's rate key. ARGV: interval ms, burst, cost.
return take_rate(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
