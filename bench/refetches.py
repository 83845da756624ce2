#!/usr/bin/env python3
"""Counts URLs a crawler fetched more than once, under sandcrawl's default normalization.

    bench/refetches.py RESULTS_DIR/sandcrawl_1.access.log.gz [more logs...]

The harness's `dups` column compares paths only, so it counts `/p/1.html?color=red&size=m`
as a duplicate of `/p/1.html`. The performance issue's target is stated under the default
normalization instead: fragments dropped (never sent anyway), dot-segments resolved (nginx
logs the request as sent), query arguments sorted, and `utm_*` arguments dropped. This script
applies those rules to each logged request of the bench's nginx log format
(`addr status bytes "request_uri" "user_agent"`) and reports how many requests repeat a URL.
robots.txt and sitemap.xml are left out, as in the harness.
"""
import collections
import gzip
import posixpath
import sys
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit


def normalized(addr, request_uri):
    u = urlsplit(request_uri)
    path = posixpath.normpath(unquote(u.path)) if u.path else "/"
    if u.path.endswith("/") and path != "/":
        path += "/"
    args = sorted((k, v) for k, v in parse_qsl(u.query, keep_blank_values=True)
                  if not k.lower().startswith("utm_"))
    return addr, path, urlencode(args)


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for p in paths:
        opener = gzip.open if p.endswith(".gz") else open
        seen = collections.Counter()
        with opener(p, "rt", errors="replace") as f:
            for line in f:
                parts = line.split('"')
                if len(parts) < 2:
                    continue
                addr = line.split(" ", 1)[0]
                if urlsplit(parts[1]).path in ("/robots.txt", "/sitemap.xml"):
                    continue
                seen[normalized(addr, parts[1])] += 1
        total = sum(seen.values())
        print(f"{p}: {total} page requests, {len(seen)} distinct URLs after default "
              f"normalization, {total - len(seen)} fetched again")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
