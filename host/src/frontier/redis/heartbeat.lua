-- ARGV: prefix, now (ms), worker, lease lifetime (ms), worker stats (JSON), fingerprints of
-- the leases the worker holds... Records the heartbeat (which keeps the worker's leases), and
-- puts back in their queues the leases of any worker silent for the lease lifetime (one that
-- died or stalled) and the ones held under this worker's name that it does not name (a
-- previous process under the same name). Returns {requeued, {counters as field, value,
-- ...}, {fingerprints named that the worker no longer holds}}.
local now, worker, ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
NOW = now
redis.call('ZADD', P .. 'workers', now, worker)
redis.call('ZADD', P .. 'alive', now, worker)
redis.call('HSET', P .. 'w:' .. worker, 'seen', now, 'stats', ARGV[5])
local touched = {}
local requeued = 0

local named = {}
for i = 6, #ARGV do
  named[ARGV[i]] = true
end
local mine = leases_of(worker)
local held = redis.call('HGETALL', mine)
local holds = {}
for i = 1, #held, 2 do
  local fp = held[i]
  if named[fp] then
    holds[fp] = true
  else
    redis.call('HDEL', mine, fp)
    requeue(worker, cmsgpack.unpack(held[i + 1]), touched)
    requeued = requeued + 1
  end
end
local gone = {}
for i = 6, #ARGV do
  if not holds[ARGV[i]] then
    gone[#gone + 1] = ARGV[i]
  end
end

-- Workers silent for the lease lifetime, a bounded number per call.
local silent = redis.call('ZRANGEBYSCORE', P .. 'alive', '-inf', '(' .. string.format('%.0f', now - ttl), 'LIMIT', 0, 100)
for _, other in ipairs(silent) do
  requeued = requeued + requeue_all(other, touched)
  redis.call('ZREM', P .. 'alive', other)
end
if requeued > 0 then
  count('expired', requeued)
end
reschedule_all(touched)
flush()
return {requeued, redis.call('HGETALL', P .. 'counters'), gone}
