#!/usr/bin/env bash
# What the shared frontier costs: the benchmark site crawled by 1, 2 and 4 sandcrawl processes
# sharing one private Redis (AOF on, appendfsync everysec, as README recommends), next to one
# process on the embedded fjall frontier, interleaved in the same run (see BENCHMARKS.md §11):
#   BENCH_DIR=/tmp/b bench/redis.sh [RUNS]
# BENCH_DIR is a harness copy with a generated site (bench/run.sh makes one). Prints one line
# per crawl: wall s, CPU s of the crawlers and of redis-server, pages, CPU ms per page
# (crawlers + Redis). Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
bin=${SANDCRAWL_BIN:-$root/target/release/sandcrawl}
harness=${BENCH_DIR:?set BENCH_DIR to a harness copy made by bench/run.sh}/bench
[ -f "$harness/site/manifest.json" ] || { echo "redis.sh: no generated site in $harness (run bench/run.sh first)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
hosts=$(python3 -c "import json,sys;print(' '.join(h.rstrip('/')+'/' for h in json.load(open(sys.argv[1]))['hosts']))" "$harness/site/manifest.json")
work=$(mktemp -d /tmp/sandcrawl-redis-bench.XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec \
  --save '' --daemonize yes --pidfile "$work/redis.pid" >/dev/null
(cd "$harness" && ./nginx_ctl.sh start >/dev/null)
cleanup() {
  (cd "$harness" && ./nginx_ctl.sh stop >/dev/null 2>&1) || true
  kill "$(cat "$work/redis.pid" 2>/dev/null)" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_pid=$(cat "$work/redis.pid")
redis_cpu() { awk '{print ($14 + $15) / 100}' "/proc/$redis_pid/stat"; }

# crawl NAME WORKERS LABEL [split]: WORKERS=0 is one process on fjall; with "split", WORKERS
# independent fjall processes each crawl their share of the hosts (the control: what running
# several processes on this machine costs without Redis).
crawl() {
  local name=$1 n=$2 dir="$work/$1"
  mkdir -p "$dir"
  local shared=() split=${4:-}
  [ "$n" -gt 0 ] && [ -z "$split" ] && shared=(--frontier "redis://127.0.0.1:$port/0" --crawl-id "$name")
  local before; before=$(redis_cpu)
  /usr/bin/time -o "$dir/time" -f "%e %U %S" bash -c '
      bin=$1 dir=$2 n=$3 split=$4; shift 4
      read -r -a all <<< "$1"; shift
      for i in $(seq "$(( n > 0 ? n : 1 ))"); do
        w=(); [ "$n" -gt 0 ] && [ -z "$split" ] && w=(--worker "w$i")
        seeds=("${all[@]}")
        if [ -n "$split" ]; then
          seeds=(); for j in "${!all[@]}"; do [ $(( j % n )) -eq $(( i - 1 )) ] && seeds+=("${all[$j]}"); done
        fi
        "$bin" run --plugins "'"$root"'/target/plugins/shop.wasm" --state "$dir/w$i" --out "$dir/w$i.jsonl" \
          --no-progress --log-level warn --concurrency 64 --per-host 16 "${w[@]}" "$@" "${seeds[@]}" &
      done
      wait' _ "$bin" "$dir" "$n" "$split" "$hosts" "${shared[@]}" >/dev/null 2>"$dir/err"
  local t; t=$(tail -1 "$dir/time")
  local after; after=$(redis_cpu)
  local pages
  pages=$(python3 -c "import json,glob,sys;print(sum(json.load(open(f))['pages'] for f in glob.glob(sys.argv[1]+'/w*/summary.json')))" "$dir")
  # Each crawl's items (over 1 GB on a large site) go before the next one runs.
  rm -rf "$dir"
  read -r wall user sys <<< "$t"
  python3 -c "
import sys
name, wall, user, sys_, r0, r1, pages = sys.argv[1], *map(float, sys.argv[2:])
crawl = user + sys_; redis = r1 - r0
print(f'{name:<9} wall {wall:6.2f} s  crawlers {crawl:6.2f} s  redis {redis:5.2f} s  pages {int(pages):6d}  cpu/page {1000*(crawl+redis)/max(pages,1):.3f} ms')
" "$3" "$wall" "$user" "$sys" "$before" "$after" "$pages"
}

for r in $(seq "$runs"); do
  crawl "fjall-$r" 0 "fjall"
  crawl "split2-$r" 2 "fjall /2" split
  crawl "split4-$r" 4 "fjall /4" split
  crawl "redis1-$r" 1 "redis x1"
  crawl "redis2-$r" 2 "redis x2"
  crawl "redis4-$r" 4 "redis x4"
done
