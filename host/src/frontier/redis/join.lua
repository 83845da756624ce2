-- ARGV: prefix, now (ms), then field, value pairs describing the crawl (config digest parts,
-- seeds). Creates the crawl if it does not exist; returns the stored description either way,
-- so the caller compares it with its own.
if redis.call('EXISTS', P .. 'meta') == 0 then
  redis.call('HSET', P .. 'meta', 'created', ARGV[2])
  for i = 3, #ARGV, 2 do
    redis.call('HSET', P .. 'meta', ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', P .. 'meta')
