#!/usr/bin/env bash
# dkv beside Redis on this machine, driven by Redis's own load generator: redis-benchmark
# against Debian's redis-server (one node, append-only file with `appendfsync always`, then with
# `appendfsync everysec`) and against a 3-node dkv (`dkv-server demo`: every write committed on
# all three nodes by two-phase commit, fsync on). The systems take turns, never running at the
# same time. Prints redis-benchmark's CSV, one block per system and pipelining depth, and fails
# if any run saw an error reply. Needs redis-server and redis-tools (Debian packages).
# Usage: bench/vs-redis.sh   (REQUESTS=200000 CLIENTS=50 TESTS=ping,set,get,incr,mset)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-ping,set,get,incr,mset}
REDIS_PORT=${REDIS_PORT:-6390}
DKV_PORT=${DKV_PORT:-9300}
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y redis-server redis-tools" >&2; exit 1; }
done
cargo build --release --quiet --bin dkv-server

scratch=$(mktemp -d)
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf "$scratch"' EXIT

# Waits until PORT answers PING, at most 30 s.
wait_for_ping() {
  for _ in $(seq 300); do
    if [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; then return 0; fi
    sleep 0.1
  done
  echo "nothing answered PING on port $1 within 30 s" >&2
  exit 1
}

# label port: runs the benchmark without and with pipelining; any error reply fails the script.
run_benchmark() {
  for pipeline in 1 16; do
    echo "# $1, -c $CLIENTS -n $REQUESTS -P $pipeline"
    out="$scratch/out"
    redis-benchmark -p "$2" -t "$TESTS" -c "$CLIENTS" -n "$REQUESTS" -P "$pipeline" --csv >"$out" 2>&1
    cat "$out"
    if grep -qi 'error' "$out"; then
      echo "$1: redis-benchmark saw error replies (above)" >&2
      exit 1
    fi
  done
}

for fsync in always everysec; do
  mkdir -p "$scratch/redis-$fsync"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$scratch/redis-$fsync" --save '' \
    --appendonly yes --appendfsync "$fsync" --daemonize no --logfile "$scratch/redis-$fsync.log" &
  server_pid=$!
  wait_for_ping "$REDIS_PORT"
  run_benchmark "redis $(redis-server --version | grep -o 'v=[0-9.]*') appendfsync $fsync" "$REDIS_PORT"
  stop_server
done

target/release/dkv-server demo -p "$DKV_PORT" -t --data-dir "$scratch/dkv" -l error >"$scratch/dkv.log" 2>&1 &
server_pid=$!
wait_for_ping "$DKV_PORT"
run_benchmark "dkv $(git rev-parse --short HEAD), 3 nodes (dkv-server demo -t)" "$DKV_PORT"
stop_server
