-- ARGV: prefix, worker, lease expiry (ms), fingerprint. Whether `worker` still holds the
-- lease (renewed if so): asked right before a page's items are written, so a worker whose
-- lease expired and went to another never writes that page's items.
if owned(ARGV[4], ARGV[2]) then
  redis.call('ZADD', P .. 'leases', 'XX', ARGV[3], ARGV[4])
  return 1
end
return 0
