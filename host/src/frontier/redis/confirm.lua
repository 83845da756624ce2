-- ARGV: prefix, worker, now (ms), fingerprint. Whether `worker` still holds the lease:
-- asked right before a page's items are written, so a worker whose lease expired and went to
-- another never writes that page's items. A yes also counts as the worker's heartbeat, which
-- keeps every lease it holds.
if redis.call('HEXISTS', leases_of(ARGV[2]), ARGV[4]) == 1 then
  redis.call('ZADD', P .. 'alive', 'XX', ARGV[3], ARGV[2])
  return 1
end
return 0
