-- ARGV: prefix, worker, fingerprint, record (with its attempts). Puts a leased URL back in
-- its queue; refused (-1) unless `worker` holds the lease.
local t = owned(ARGV[3], ARGV[2])
if not t then
  return -1
end
redis.call('HSET', P .. 'r', ARGV[3], ARGV[4])
requeue(ARGV[3], t)
flush_counts()
return 1
