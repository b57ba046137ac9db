#!/usr/bin/env bash
# dkv beside a 3-member etcd on this machine: the same closed-loop workloads (100-byte values,
# 10,000 keys, fsync on for both), run alternately and never at the same time. Prints one JSON
# line per run: etcd's, dkv's, then dkv's with --availability (which, like etcd, keeps serving
# through the loss of a minority). Needs etcd-server, etcd-client and protobuf-compiler installed
# (see ../shared/peers/README.md). Usage: bench/vs-etcd.sh [ROUNDS]   (SECS=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
SECS=${SECS:-10}
PEERS=${PEERS:-../shared/peers}
cargo build --release --quiet --bin dkv-bench
CARGO_TARGET_DIR=target/peers cargo build --release --quiet --manifest-path "$PEERS/etcdbench/Cargo.toml"
trap '"$PEERS/etcd3.sh" stop' EXIT

# op clients [etcdbench flags]
WORKLOADS=("put 64" "put 1" "get 16")
for round in $(seq "$ROUNDS"); do
  for workload in "${WORKLOADS[@]}"; do
    set -- $workload
    "$PEERS/etcd3.sh" start >/dev/null
    echo "etcd round=$round $(target/peers/release/etcdbench --op "$1" --clients "$2" --secs "$SECS")"
    "$PEERS/etcd3.sh" stop
    echo "dkv  round=$round $(target/release/dkv-bench --local 3 --op "$1" --clients "$2" --secs "$SECS" --json)"
    echo "dkv-availability round=$round $(target/release/dkv-bench --local 3 --op "$1" --clients "$2" --secs "$SECS" --availability --json)"
  done
done
