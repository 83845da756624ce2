-- ARGV: prefix, now (ms), worker, lease expiry (ms), worker stats (JSON), fingerprints of
-- the worker's leases... Renews those leases (only the ones it still holds), records the
-- heartbeat, and puts expired leases of any worker (one that died or stalled) back in their
-- queues, a bounded number per call. Returns {requeued, {counters as field, value, ...},
-- {fingerprints of the given leases the worker no longer holds}, live workers}.
local now, worker, expiry = tonumber(ARGV[2]), ARGV[3], ARGV[4]
redis.call('ZADD', P .. 'workers', now, worker)
redis.call('ZADD', P .. 'alive', now, worker)
redis.call('HSET', P .. 'w:' .. worker, 'seen', now, 'stats', ARGV[5])
local gone = {}
for i = 6, #ARGV do
  if owned(ARGV[i], worker) then
    redis.call('ZADD', P .. 'leases', 'XX', expiry, ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 1000)
local requeued = 0
for _, fp in ipairs(expired) do
  local raw = redis.call('HGET', P .. 'lease', fp)
  if raw then
    requeue(fp, cmsgpack.unpack(raw))
    requeued = requeued + 1
  else
    redis.call('ZREM', P .. 'leases', fp)
  end
end
if requeued > 0 then
  count('expired', requeued)
end
local alive = redis.call('ZCOUNT', P .. 'alive', now - (tonumber(expiry) - now), '+inf')
flush_counts()
return {requeued, redis.call('HGETALL', P .. 'counters'), gone, alive}
