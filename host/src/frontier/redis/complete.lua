-- ARGV: prefix, worker, fingerprint, state ("d" done, "f" failed), counted ("1"/"0"), sink
-- token, n aliases, aliases..., n links, links (4 each, as add.lua).
-- One atomic step: refused (-1) unless `worker` still holds the lease; otherwise the lease
-- ends, the URL gets its state, the redirect targets are marked known, the new links are
-- queued, the counters move and the worker's sink token is stored. Returns links added.
local worker, fp, state, counted, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local t = owned(fp, worker)
if not t then
  return -1
end
local host = t[2]
drop_lease(fp, host)
redis.call('HDEL', P .. 'r', fp)
local sk, sf = seen_key(fp)
redis.call('HSET', sk, sf, state)
local na = tonumber(ARGV[7])
for i = 8, 7 + na do
  local ak, af = seen_key(ARGV[i])
  redis.call('HSET', ak, af, 'a')
end
if state == 'd' then
  redis.call('HINCRBY', P .. 'counters', 'done', 1)
else
  redis.call('HINCRBY', P .. 'counters', 'failed', 1)
end
local w = P .. 'w:' .. worker
if counted == '1' then
  redis.call('HINCRBY', P .. 'counters', 'pages', 1)
  redis.call('HINCRBY', P .. 'h:' .. host, 'pages', 1)
  redis.call('HINCRBY', w, 'pages', 1)
end
redis.call('HSET', w, 'token', token)
local touched = {}
touched[host] = true
local nl_at = 8 + na
local added = add_all(nl_at + 1, tonumber(ARGV[nl_at]), touched)
reschedule_all(touched)
return added
