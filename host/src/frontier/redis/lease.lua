-- ARGV: prefix, now (ms), worker, lease expiry (ms), host, per-host limit, delay (ms), want.
-- A worker takes at most its share of the host's limit (the limit over the live workers,
-- rounded up), so the worker that finishes a request first does not take every slot.
-- Returns {wait until (ms, "0": none; "-1": this worker's share is in flight, wait for one of
-- its own requests), the host's counted pages, fp, record, fp, record, ...}.
-- Politeness is decided here, for every worker at once: the host's in-flight count stays
-- under its limit and its next start respects the delay and any back-off.
local now, worker, expiry = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local host, limit, delay, want = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local h = P .. 'h:' .. host
redis.call('HSET', h, 'limit', limit)
local v = redis.call('HMGET', h, 'inflight', 'next', 'block', 'pages')
local inflight = num(v[1])
local pages = v[4] or '0'
local at = math.max(num(v[2]), num(v[3]))
if at > now then
  reschedule(host)
  return {string.format('%.0f', at), pages}
end
local alive = redis.call('ZCOUNT', P .. 'alive', now - (tonumber(expiry) - now), '+inf')
local share = math.ceil(limit / math.max(alive, 1))
local held = num(redis.call('HGET', h, 'w:' .. worker))
if held >= share and inflight < limit then
  return {'-1', pages}
end
local n = math.min(want, limit - inflight, share - held)
if n <= 0 then
  reschedule(host)
  return {string.format('%.0f', FULL), pages}
end
local popped = redis.call('ZPOPMIN', P .. 'q:' .. host, n)
local out = {'0', pages}
local k = 0
for i = 1, #popped, 2 do
  local member = popped[i]
  local fp = string.sub(member, -16)
  redis.call('ZADD', P .. 'leases', expiry, fp)
  redis.call('HSET', P .. 'lease', fp, cmsgpack.pack({worker, host, member}))
  out[#out + 1] = fp
  out[#out + 1] = redis.call('HGET', P .. 'r', fp) or ''
  k = k + 1
end
if k > 0 then
  redis.call('HSET', h, 'inflight', inflight + k)
  redis.call('HINCRBY', h, 'w:' .. worker, k)
  if delay > 0 then
    redis.call('HSET', h, 'next', now + delay)
  end
  redis.call('HINCRBY', P .. 'counters', 'queued', -k)
  redis.call('HINCRBY', P .. 'counters', 'leased', k)
end
reschedule(host)
return out
