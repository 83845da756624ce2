-- ARGV: prefix, now (ms), then field, value pairs describing the crawl (config digest parts,
-- and "seeds" when this worker has some). Creates the crawl if it does not exist, unless the
-- worker has no seeds (then nothing is created and {} is returned); records the seeds of a
-- crawl that has none yet. Returns the stored description, so the caller compares it with
-- its own.
local meta = P .. 'meta'
local seeds = nil
for i = 3, #ARGV, 2 do
  if ARGV[i] == 'seeds' then
    seeds = ARGV[i + 1]
  end
end
if redis.call('EXISTS', meta) == 0 then
  if not seeds then
    return {}
  end
  redis.call('HSET', meta, 'created', ARGV[2])
  for i = 3, #ARGV, 2 do
    redis.call('HSET', meta, ARGV[i], ARGV[i + 1])
  end
elseif seeds then
  redis.call('HSETNX', meta, 'seeds', seeds)
end
return redis.call('HGETALL', meta)
