#!/usr/bin/env bash
# sandcrawl as a peer of the team's crawl benchmark (../shared/bench/run_all.sh):
#   SANDCRAWL_CMD="$PWD/bench/crawl.sh {items} {hosts} {conc} {per_host}"
# Crawls every host with the `shop` plugin (schema.org products, follow all links).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
items=$1 hosts=$2 conc=$3 per_host=$4
state=$(mktemp -d /tmp/sandcrawl-bench-state.XXXXXX)
trap 'rm -rf "$state"' EXIT
IFS=, read -r -a seeds <<< "$hosts"
for i in "${!seeds[@]}"; do seeds[$i]="${seeds[$i]%/}/"; done
"${SANDCRAWL_BIN:-$root/target/release/sandcrawl}" run \
  --plugins "$root/target/plugins/shop.wasm" \
  --state "$state" --out "$items" --no-progress \
  --concurrency "$conc" --per-host "$per_host" \
  --log-level warn \
  "${seeds[@]}"
