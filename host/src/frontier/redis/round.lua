-- One round trip of a worker: first the completions it has not sent yet, then the leases it
-- asks for (either list may be empty), atomically.
-- ARGV: prefix, worker, now (ms), lease lifetime (ms), sink token, the worker's feed cursor
-- (generation, offset; "-1" for a new reader), k, then k completions,
-- each: fingerprint, host, state ("d" done, "f" failed), counted ("1"/"0"), n aliases,
-- aliases..., n links, links (4 each, as add.lua); then n, and n × (host, per-host limit,
-- delay (ms), want).
--
-- A completion is accepted only if `worker` still holds the lease; then the lease ends, the
-- URL gets its state, the redirect targets are marked known, the new links are queued and the
-- counters move. The worker's sink token is stored with the batch.
--
-- A lease is decided here, for every worker at once: the host's in-flight count stays under
-- its limit (1 for a host with a delay), its next start is at least the delay after the end
-- of its last request and after any back-off, and a worker takes at most
-- its share of the limit (the limit over the live workers, rounded up), so the worker that
-- finishes a request first does not take every slot.
--
-- Returns {links added, {fingerprints refused}, {per host asked: {wait until (ms, "0": none;
-- "-1": this worker's share is in flight, wait for one of its own requests; "-2": leased,
-- and with that its share or the host's limit is in flight), the host's counted pages, fp,
-- record, fp, record, ...}}, feed bytes (fingerprints the other workers
-- queued), feed generation, feed offset}.
local worker, now, ttl, token = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local w = P .. 'w:' .. worker
local mine = leases_of(worker)
local touched = {}
local worker_pages = 0
local refused = {}
local added = 0

-- The state of each host this call touches, read once (first use) and written once (the
-- end), instead of a command per change.
local H = {}
-- How long a worker that was told "full" counts as waiting for a slot of the host (it asks
-- again every few milliseconds while it waits).
local WAITING = 100
local function host_state(host)
  local st = H[host]
  if not st then
    local v = redis.call('HMGET', P .. 'h:' .. host, 'inflight', 'limit', 'next', 'block', 'pages',
      'w:' .. worker, 'waiter', 'waited', 'delay')
    st = {
      inflight = num(v[1]), limit = num(v[2]), next = num(v[3]), block = num(v[4]),
      pages = num(v[5]), held = num(v[6]), waiter = v[7] or '', waited = num(v[8]),
      delay = num(v[9]),
      freed = 0, dirty = {},
    }
    H[host] = st
  end
  return st
end
local function set(st, field, value)
  st[field] = value
  st.dirty[field] = true
end

local alive = redis.call('ZCOUNT', P .. 'alive', now - ttl, '+inf')
-- Read before this call's own links are fed: the worker knows those already.
local feed, feed_g, feed_off = '', tonumber(ARGV[6]), tonumber(ARGV[7])
if alive > 1 then
  feed, feed_g, feed_off = feed_read(tonumber(ARGV[6]), tonumber(ARGV[7]), 65536)
  FEED = {}
end
local k = tonumber(ARGV[8])
local i = 9
for _ = 1, k do
  local fp, host, state, counted = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local na = tonumber(ARGV[i + 4])
  local nl_at = i + 5 + na
  local nl = tonumber(ARGV[nl_at])
  if redis.call('HDEL', mine, fp) == 0 then
    -- Not this worker's lease any more: it expired and went back to the queue.
    refused[#refused + 1] = fp
  else
    -- The lease ends: one request less in flight on the host, and in this worker's share.
    local st = host_state(host)
    set(st, 'inflight', math.max(st.inflight - 1, 0))
    set(st, 'held', math.max(st.held - 1, 0))
    st.freed = st.freed + 1
    if st.delay > 0 then
      -- A paced host's delay runs from the end of its request (politeness.rs says why).
      set(st, 'next', math.max(st.next, now + st.delay))
    end
    count('leased', -1)
    local sk, sf = seen_key(fp)
    redis.call('HSET', sk, sf, state)
    for a = i + 5, i + 4 + na do
      local ak, af = seen_key(ARGV[a])
      redis.call('HSET', ak, af, 'a')
    end
    if state == 'd' then
      count('done', 1)
    else
      count('failed', 1)
    end
    if counted == '1' then
      count('pages', 1)
      set(st, 'pages', st.pages + 1)
      worker_pages = worker_pages + 1
    end
    added = added + add_all(nl_at + 1, nl, touched)
  end
  i = nl_at + 1 + 4 * nl
end
if k > 0 then
  redis.call('HSET', w, 'token', token)
end
if worker_pages > 0 then
  redis.call('HINCRBY', w, 'pages', worker_pages)
end

local function lease_one(host, limit, delay, want)
  local st = host_state(host)
  if st.limit ~= limit then
    set(st, 'limit', limit)
  end
  if st.delay ~= delay then
    set(st, 'delay', delay)
  end
  local pages = string.format('%.0f', st.pages)
  local at = math.max(st.next, st.block)
  if at > now then
    return {string.format('%.0f', at), pages}
  end
  local share = math.ceil(limit / math.max(alive, 1))
  if st.held >= share and st.inflight < limit then
    return {'-1', pages}
  end
  local n = math.min(want, limit - st.inflight, share - st.held)
  if n <= 0 then
    if st.held < share then
      -- Under its share but every slot is taken: this worker waits for one.
      set(st, 'waiter', worker)
      set(st, 'waited', now)
    end
    return {string.format('%.0f', FULL), pages}
  end
  if st.freed > 0 and st.waiter ~= '' and st.waiter ~= worker and st.waited + WAITING > now then
    -- Another worker is waiting for a slot of this host and this call just freed one: leave
    -- it to the waiter. Without this, a worker that completes and re-leases in one call
    -- keeps its slots for ever when there are more workers than slots (per_host 2, 3 workers).
    n = math.min(n, limit - st.inflight - 1)
    if n <= 0 then
      return {string.format('%.0f', FULL), pages}
    end
  end
  local popped = redis.call('ZPOPMIN', P .. 'q:' .. host, n)
  local out = {'0', pages}
  local held = {}
  for j = 1, #popped, 2 do
    local member = popped[j]
    local fp = string.sub(member, HEAD - 15, HEAD)
    held[#held + 1] = fp
    held[#held + 1] = cmsgpack.pack({host, member})
    out[#out + 1] = fp
    out[#out + 1] = string.sub(member, HEAD + 1)
  end
  local got = #held / 2
  if got > 0 then
    redis.call('HSET', mine, unpack(held))
    set(st, 'inflight', st.inflight + got)
    set(st, 'held', st.held + got)
    if delay > 0 then
      set(st, 'next', now + delay)
    end
    count('queued', -got)
    count('leased', got)
    if st.waiter == worker then
      set(st, 'waiter', '')
    end
    if st.held >= share or st.inflight >= limit then
      -- Tell the worker not to ask again before one of its own requests here ends.
      out[1] = '-2'
    end
  end
  return out
end

local leases = {}
local n = tonumber(ARGV[i])
for j = 0, n - 1 do
  local a = i + 1 + j * 4
  leases[#leases + 1] = lease_one(ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
end

-- Write back the hosts' state, then their place in the schedule (from the state in hand).
for host, st in pairs(H) do
  local h = P .. 'h:' .. host
  local fields = {}
  for f, _ in pairs(st.dirty) do
    if f == 'waiter' then
      fields[#fields + 1] = 'waiter'
      fields[#fields + 1] = st.waiter
    elseif f == 'held' then
      if st.held > 0 then
        fields[#fields + 1] = 'w:' .. worker
        fields[#fields + 1] = string.format('%.0f', st.held)
      else
        redis.call('HDEL', h, 'w:' .. worker)
      end
    else
      fields[#fields + 1] = f
      fields[#fields + 1] = string.format('%.0f', st[f])
    end
  end
  if #fields > 0 then
    redis.call('HSET', h, unpack(fields))
  end
  touched[host] = nil
  if redis.call('ZCARD', P .. 'q:' .. host) == 0 then
    redis.call('ZREM', P .. 'hosts', host)
  else
    local at = math.max(st.next, st.block)
    if st.limit > 0 and st.inflight >= st.limit then
      at = FULL
    end
    redis.call('ZADD', P .. 'hosts', at, host)
  end
end
-- Hosts that only got new links.
reschedule_all(touched)
flush()
return {added, refused, leases, feed, string.format('%.0f', feed_g), string.format('%.0f', feed_off)}
