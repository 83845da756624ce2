#!/usr/bin/env bash
# The crawl benchmark in one command, from a clean clone (see BENCHMARKS.md):
#   bench/run.sh                          # 10,000 pages / 4 hosts, peers + sandcrawl, 3 runs
#   RUNS=1 PEERS="spider_rs sandcrawl" bench/run.sh
# It builds sandcrawl and the plugins, copies the team's peer harness (../shared/bench:
# site generator, nginx on 127.0.0.2-5, wrk ceiling, Scrapy / spider-rs / aiohttp peers)
# into a scratch folder, and runs it with sandcrawl as one more peer. Then it runs the
# fetch-only benchmark on the same nginx, next to wrk. Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
[ -d "$shared" ] || { echo "bench: $shared not found (set SHARED_BENCH to the team's bench folder)" >&2; exit 1; }
"$root/dev" build
work=${BENCH_DIR:-$(mktemp -d /tmp/sandcrawl-bench.XXXXXX)}
mkdir -p "$work"
[ -d "$work/bench" ] || { cp -r "$shared" "$work/"; chmod -R u+w "$work/bench"; }
cd "$work/bench"
export PEERS=${PEERS:-"spider_rs spider_rs_noparse scrapy naive_lxml sandcrawl"}
export RUNS=${RUNS:-3}
export SANDCRAWL_CMD="$root/bench/crawl.sh {items} {hosts} {conc} {per_host}"
./run_all.sh
# Fetch-only throughput on the same site (the harness stopped nginx; start it again).
./nginx_ctl.sh start >/dev/null
trap './nginx_ctl.sh stop >/dev/null 2>&1' EXIT
host=$(python3 -c "import json;print(json.load(open('site/manifest.json'))['hosts'][0])")
sed "s|^|$host|" run/paths.txt > run/urls.txt
(cd "$root" && FETCH_URLS="$work/bench/run/urls.txt" cargo bench -q -p sandcrawl-bench --bench fetch)
echo "results: $work/bench/results/"
