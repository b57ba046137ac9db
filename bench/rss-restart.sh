#!/usr/bin/env bash
# Memory and restart time of dkv-server with a large store: three server processes on
# loopback, KEYS keys of 100-byte values written through dkv-bench, then each server's resident
# set (VmRSS, and its peak VmHWM), then node 0 killed with -9 and restarted: the time from its
# start to its first answered read. Usage: bench/rss-restart.sh   (KEYS=1000000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
PORT=${PORT:-19400}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/dkv-rss-XXXXXX")
cargo build --release --quiet --bin dkv-server --bin dkv-client --bin dkv-bench
B=target/release
pids=()
start_node() { # id [--init: the cluster's first start]
  local i=$1 init=${2:-} peers=""
  for j in 0 1 2; do [ "$j" = "$i" ] || peers="$peers$j=127.0.0.1:$((PORT + 1000 + j)),"; done
  "$B/dkv-server" --id "$i" -p $((PORT + i)) --peers "${peers%,}" --data-dir "$DIR/node-$i" -l error \
    --credentials "$DIR/credentials/node-$i" $init 2>>"$DIR/node-$i.log" &
  pids[$i]=$!
}
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
answers() { # port: the node answers a read (found or not found)
  local code=0
  "$B/dkv-client" -p "$1" --timeout 1 get key0000000000 >/dev/null 2>&1 || code=$?
  [ "$code" = 0 ] || [ "$code" = 3 ]
}
"$B/dkv-server" init "$DIR/credentials" --ids 0,1,2 >/dev/null
for i in 0 1 2; do start_node "$i" --init; done
for i in 0 1 2; do until answers $((PORT + i)); do sleep 0.05; done; done
NODES=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
"$B/dkv-bench" --nodes "$NODES" --op get --keys "$KEYS" --clients 64 --secs 1 --json
for i in 0 1 2; do
  echo "node $i: $(grep -E 'VmRSS|VmHWM' "/proc/${pids[$i]}/status" | tr -s ' \t\n' ' ')"
done
du -sh "$DIR"/node-*/
kill -9 "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
started=$(date +%s.%N)
start_node 0
for _ in $(seq 6000); do
  answers "$PORT" && break
  sleep 0.005
done
echo "restart of node 0 to its first answered read: $(echo "$(date +%s.%N) - $started" | bc) s"
echo "node 0 after restart: $(grep -E 'VmRSS|VmHWM' "/proc/${pids[0]}/status" | tr -s ' \t\n' ' ')"
