-- Shared by every script (prepended in scripts.rs). ARGV[1] is the crawl's key prefix
-- "sc:{ID}:"; fingerprints are 16 raw bytes.
local P = ARGV[1]
-- A host whose in-flight count reached its limit waits for a completion, not for a time.
local FULL = 1e15

-- The seen set: 8 bytes of the fingerprint in one of 8,192 hashes (13.7 B/URL measured,
-- against 72 for one SET of 16-byte members). The value is the URL's state.
local function seen_key(fp)
  local b1, b2 = string.byte(fp, 1, 2)
  return P .. 's:' .. ((b1 * 256 + b2) % 8192), string.sub(fp, 3, 10)
end

local function num(v)
  return tonumber(v or '0') or 0
end

-- Changes to the crawl's counters, written once per script call by `flush_counts`, not once
-- per URL.
local C = {}
local function count(field, n)
  C[field] = (C[field] or 0) + n
end
local function flush_counts()
  for field, n in pairs(C) do
    if n ~= 0 then
      redis.call('HINCRBY', P .. 'counters', field, n)
    end
  end
  C = {}
end

-- Puts `host` in the schedule at the time it may start next, or takes it out when its
-- queue is empty.
local function reschedule(host)
  if redis.call('ZCARD', P .. 'q:' .. host) == 0 then
    redis.call('ZREM', P .. 'hosts', host)
    return
  end
  local v = redis.call('HMGET', P .. 'h:' .. host, 'inflight', 'limit', 'next', 'block')
  local at = math.max(num(v[3]), num(v[4]))
  local limit = num(v[2])
  if limit > 0 and num(v[1]) >= limit then
    at = FULL
  end
  redis.call('ZADD', P .. 'hosts', at, host)
end

-- Queues a URL not seen before; returns 1 if it was new.
local function add_new(fp, host, order, record, touched)
  local sk, sf = seen_key(fp)
  if redis.call('HSETNX', sk, sf, 'q') == 0 then
    return 0
  end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'q:' .. host, 0, order .. string.format('%016.0f', seq) .. fp)
  redis.call('HSET', P .. 'r', fp, record)
  touched[host] = true
  return 1
end

-- Adds ARGV[i .. i + 4n - 1] (fingerprint, host, order, record) and reschedules their hosts.
local function add_all(i, n, touched)
  local added = 0
  for k = 0, n - 1 do
    local j = i + k * 4
    added = added + add_new(ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], touched)
  end
  if added > 0 then
    count('known', added)
    count('queued', added)
  end
  return added
end

local function reschedule_all(touched)
  for host, _ in pairs(touched) do
    reschedule(host)
  end
end

-- The lease of `fp` if `worker` holds it: {worker, host, queue member}.
local function owned(fp, worker)
  local raw = redis.call('HGET', P .. 'lease', fp)
  if not raw then
    return nil
  end
  local t = cmsgpack.unpack(raw)
  if t[1] ~= worker then
    return nil
  end
  return t
end

-- Ends a lease ({worker, host, member}): it is no longer in flight on its host, nor in
-- that worker's share of the host.
local function drop_lease(fp, t)
  redis.call('HDEL', P .. 'lease', fp)
  redis.call('ZREM', P .. 'leases', fp)
  local h = P .. 'h:' .. t[2]
  if redis.call('HINCRBY', h, 'inflight', -1) < 0 then
    redis.call('HSET', h, 'inflight', 0)
  end
  if redis.call('HINCRBY', h, 'w:' .. t[1], -1) <= 0 then
    redis.call('HDEL', h, 'w:' .. t[1])
  end
  count('leased', -1)
end

-- Puts a leased URL back in its queue.
local function requeue(fp, t)
  drop_lease(fp, t)
  redis.call('ZADD', P .. 'q:' .. t[2], 0, t[3])
  count('queued', 1)
  reschedule(t[2])
end
