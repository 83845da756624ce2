#!/usr/bin/env bash
# A/B of sandcrawl builds on the benchmark site, interleaved so that the shared machine's load
# swings hit every build alike (see BENCHMARKS.md §1, "what each change bought"):
#   cp target/release/sandcrawl /tmp/before   # ...change, rebuild...
#   BENCH_DIR=/tmp/b bench/ab.sh 4 /tmp/before target/release/sandcrawl
# A "build" may also be a wrapper script that sets an environment knob, e.g.
#   printf '#!/bin/sh\nSANDCRAWL_NO_WARM=1 exec %s "$@"\n' "$PWD/target/release/sandcrawl" > /tmp/nowarm
# BENCH_DIR is a harness copy made by bench/run.sh (its site is generated there). Prints one
# line per crawl: wall and CPU seconds and peak RSS, from /usr/bin/time. Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
runs=$1; shift
harness=${BENCH_DIR:?set BENCH_DIR to a harness copy made by bench/run.sh}/bench
[ -f "$harness/site/manifest.json" ] || { echo "ab: no generated site in $harness (run bench/run.sh first)" >&2; exit 1; }
hosts=$(python3 -c "import json,sys;print(','.join(json.load(open(sys.argv[1]))['hosts']))" "$harness/site/manifest.json")
(cd "$harness" && ./nginx_ctl.sh start >/dev/null)
trap '(cd "$harness" && ./nginx_ctl.sh stop >/dev/null 2>&1)' EXIT
items=$(mktemp /tmp/sandcrawl-ab.XXXXXX)
for ((r = 1; r <= runs; r++)); do
  for bin in "$@"; do
    rm -f "$items"
    SANDCRAWL_BIN=$bin /usr/bin/time -f "$bin: wall %e s, cpu %U+%S s, rss %M KB" \
      "$root/bench/crawl.sh" "$items" "$hosts" 64 16 2>&1 >/dev/null | grep -E "wall|error" || true
  done
done
rm -f "$items"
