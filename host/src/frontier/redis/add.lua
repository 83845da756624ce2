-- ARGV: prefix, n, then n × (fingerprint, host, order, record). Returns how many were new.
local touched = {}
local added = add_all(3, tonumber(ARGV[2]), touched)
reschedule_all(touched)
flush()
return added
