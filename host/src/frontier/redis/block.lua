-- ARGV: prefix, host, until (ms). No worker starts a request to `host` before `until`
-- (Retry-After, back-off): it holds for the whole crawl, not one process.
local h = P .. 'h:' .. ARGV[2]
local until_ms = tonumber(ARGV[3])
if num(redis.call('HGET', h, 'block')) < until_ms then
  redis.call('HSET', h, 'block', until_ms)
end
reschedule(ARGV[2])
return 1
