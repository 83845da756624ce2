-- ARGV: prefix, worker, sink token, k, then k completions, each: fingerprint, state ("d"
-- done, "f" failed), counted ("1"/"0"), n aliases, aliases..., n links, links (4 each, as
-- add.lua). Each completion is accepted only if `worker` still holds the lease; then the
-- lease ends, the URL gets its state, the redirect targets are marked known, the new links
-- are queued and the counters move. The worker's sink token is stored with the batch.
-- Returns {links added, {fingerprints refused}}.
local worker, token, k = ARGV[2], ARGV[3], tonumber(ARGV[4])
local w = P .. 'w:' .. worker
local touched = {}
local refused = {}
local added = 0
local i = 5
for _ = 1, k do
  local fp, state, counted = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local na = tonumber(ARGV[i + 3])
  local nl_at = i + 4 + na
  local nl = tonumber(ARGV[nl_at])
  local t = owned(fp, worker)
  if not t then
    refused[#refused + 1] = fp
  else
    local host = t[2]
    drop_lease(fp, t)
    redis.call('HDEL', P .. 'r', fp)
    local sk, sf = seen_key(fp)
    redis.call('HSET', sk, sf, state)
    for a = i + 4, i + 3 + na do
      local ak, af = seen_key(ARGV[a])
      redis.call('HSET', ak, af, 'a')
    end
    if state == 'd' then
      redis.call('HINCRBY', P .. 'counters', 'done', 1)
    else
      redis.call('HINCRBY', P .. 'counters', 'failed', 1)
    end
    if counted == '1' then
      redis.call('HINCRBY', P .. 'counters', 'pages', 1)
      redis.call('HINCRBY', P .. 'h:' .. host, 'pages', 1)
      redis.call('HINCRBY', w, 'pages', 1)
    end
    touched[host] = true
    added = added + add_all(nl_at + 1, nl, touched)
  end
  i = nl_at + 1 + 4 * nl
end
redis.call('HSET', w, 'token', token)
reschedule_all(touched)
return {added, refused}
