-- Shared by every script (prepended in scripts.rs). ARGV[1] is the crawl's key prefix
-- "sc:{ID}:"; fingerprints are 16 raw bytes.
local P = ARGV[1]
-- A host whose in-flight count reached its limit waits for a completion, not for a time.
local FULL = 1e15
-- A queue member is order (8 bytes) .. discovery sequence (16 digits) .. fingerprint (16
-- bytes) .. the URL record (JSON): the first 40 bytes sort it, the rest travels with it, so
-- a lease reads the record from the member it pops instead of from a hash of its own.
local HEAD = 40

-- The seen set: 8 bytes of the fingerprint in one of 8,192 hashes (13.7 B/URL measured,
-- against 72 for one SET of 16-byte members). The value is the URL's state.
local function seen_key(fp)
  local b1, b2 = string.byte(fp, 1, 2)
  return P .. 's:' .. ((b1 * 256 + b2) % 8192), string.sub(fp, 3, 10)
end

local function num(v)
  return tonumber(v or '0') or 0
end

-- A worker's leases: fingerprint -> msgpack {host, queue member}. They live as long as the
-- worker's heartbeat (`alive`): a worker silent for the lease lifetime loses them all.
local function leases_of(worker)
  return P .. 'l:' .. worker
end

-- The feed: the fingerprints of newly queued URLs, appended once per call while several
-- workers are alive and read back by the others with each round trip, so that a worker's
-- known-link cache also learns what the other workers queued (a link it then meets costs no
-- question to Redis). Two generations of at most FEED_MAX bytes each: a cache, not a record.
local FEED_MAX = 1048576
-- Fingerprints queued by this call, or nil while they are not fed (one worker alone).
local FEED = nil
local function feed_key(g)
  return P .. 'feed:' .. string.format('%.0f', g)
end

-- Changes to the crawl's counters and to the discovery sequence, written once per script
-- call by `flush`, not once per URL (fewer writes, and fewer commands in the AOF).
local C = {}
local SEQ = nil
local SEQ0 = nil
local function count(field, n)
  C[field] = (C[field] or 0) + n
end
local function next_seq()
  if not SEQ then
    SEQ = num(redis.call('GET', P .. 'seq'))
    SEQ0 = SEQ
  end
  SEQ = SEQ + 1
  return SEQ
end
local function flush()
  for field, n in pairs(C) do
    if n ~= 0 then
      redis.call('HINCRBY', P .. 'counters', field, n)
    end
  end
  C = {}
  if SEQ and SEQ ~= SEQ0 then
    redis.call('SET', P .. 'seq', string.format('%.0f', SEQ))
  end
  SEQ = nil
  if FEED and #FEED > 0 then
    local g = num(redis.call('GET', P .. 'feedgen'))
    if redis.call('APPEND', feed_key(g), table.concat(FEED)) >= FEED_MAX then
      redis.call('SET', P .. 'feedgen', string.format('%.0f', g + 1))
      redis.call('DEL', feed_key(g - 1))
    end
  end
  FEED = nil
end

-- Up to `max` bytes of the feed from a reader's cursor (generation, offset; a new reader
-- starts at the current generation's beginning, one that fell two generations behind skips
-- to it). Returns the bytes and the new cursor.
local function feed_read(g, off, max)
  local cur = num(redis.call('GET', P .. 'feedgen'))
  local parts = {}
  if g < 0 or (g ~= cur and g ~= cur - 1) then
    g, off = cur, 0
  end
  if g == cur - 1 then
    local part = redis.call('GETRANGE', feed_key(g), off, off + max - 1)
    parts[1] = part
    if #part == max then
      -- More of the previous generation is left for the next call.
      return part, g, off + #part
    end
    max = max - #part
    g, off = cur, 0
  end
  if max > 0 then
    local part = redis.call('GETRANGE', feed_key(g), off, off + max - 1)
    parts[#parts + 1] = part
    off = off + #part
  end
  return table.concat(parts), g, off
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

local function reschedule_all(touched)
  for host, _ in pairs(touched) do
    reschedule(host)
  end
end

-- Queues a URL not seen before; returns 1 if it was new.
local function add_new(fp, host, order, record, touched)
  local sk, sf = seen_key(fp)
  if redis.call('HSETNX', sk, sf, 'q') == 0 then
    return 0
  end
  local member = order .. string.format('%016.0f', next_seq()) .. fp .. record
  redis.call('ZADD', P .. 'q:' .. host, 0, member)
  if FEED then
    FEED[#FEED + 1] = fp
  end
  touched[host] = true
  return 1
end

-- Adds ARGV[i .. i + 4n - 1] (fingerprint, host, order, record); the hosts that got URLs
-- go in `touched`, for the caller to reschedule.
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

-- The calling script's clock (ms, the workers' clock like `next`), when it has one.
local NOW = nil

-- `n` leases of `worker` on `host` ended: they are no longer in flight on the host, nor in
-- that worker's share of it.
local function free_slots(host, worker, n)
  local h = P .. 'h:' .. host
  if redis.call('HINCRBY', h, 'inflight', -n) < 0 then
    redis.call('HSET', h, 'inflight', 0)
  end
  -- A paced host's delay runs from the end of its request (politeness.rs says why).
  if NOW then
    local v = redis.call('HMGET', h, 'delay', 'next')
    local d = num(v[1])
    if d > 0 then
      redis.call('HSET', h, 'next', string.format('%.0f', math.max(num(v[2]), NOW + d)))
    end
  end
  if redis.call('HINCRBY', h, 'w:' .. worker, -n) <= 0 then
    redis.call('HDEL', h, 'w:' .. worker)
  end
  count('leased', -n)
end

-- Puts a URL `worker` held ({host, member}) back in its queue. The caller has taken it out
-- of the worker's leases; `touched` gets the host, for the caller to reschedule.
local function requeue(worker, t, touched)
  free_slots(t[1], worker, 1)
  redis.call('ZADD', P .. 'q:' .. t[1], 0, t[2])
  count('queued', 1)
  touched[t[1]] = true
end

-- Requeues every lease `worker` holds (it stopped answering, or a new process took its name);
-- returns how many.
local function requeue_all(worker, touched)
  local l = leases_of(worker)
  local held = redis.call('HGETALL', l)
  for i = 2, #held, 2 do
    requeue(worker, cmsgpack.unpack(held[i]), touched)
  end
  redis.call('DEL', l)
  return #held / 2
end
