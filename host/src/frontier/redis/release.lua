-- ARGV: prefix, worker, fingerprint, record (with its attempts), now (ms). Puts a leased URL
-- back in its queue; refused (-1) unless `worker` holds the lease.
NOW = tonumber(ARGV[5])
local mine = leases_of(ARGV[2])
local raw = redis.call('HGET', mine, ARGV[3])
if not raw then
  return -1
end
redis.call('HDEL', mine, ARGV[3])
local t = cmsgpack.unpack(raw)
local touched = {}
requeue(ARGV[2], {t[1], string.sub(t[2], 1, HEAD) .. ARGV[4]}, touched)
reschedule_all(touched)
flush()
return 1
