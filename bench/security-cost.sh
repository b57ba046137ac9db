#!/usr/bin/env bash
# What security costs, measured side by side in one run: dkv-bench --local 3 built at a
# revision before the trust boundary (peers in the clear on the client port, no users) beside
# the current code with peers over mutual TLS ("peers-tls"), and with clients over TLS as users
# too ("all-tls"). Same workloads as bench/vs-etcd.sh (100-byte values, 10,000 keys, fsync
# on), run one at a time, taking turns. Prints one JSON line per run.
# Usage: bench/security-cost.sh [ROUNDS] [BASE_REVISION]   (3 and 804db21 by default; SECS=10;
# WORKLOADS="put 1" for one workload, as OP CLIENTS pairs separated by commas). The current
# build runs with --blocking-clients: one thread per client through the client library, as the
# base revision and --secure-clients do, so that only security differs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BASE=${2:-804db21}
SECS=${SECS:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/dkv-security-cost.XXXXXX")
cleanup() {
    git worktree remove --force "$work/base" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
git worktree add --detach --quiet "$work/base" "$BASE"
(cd "$work/base" && CARGO_TARGET_DIR="$work/target" cargo build --release --locked --quiet -p dkv --bin dkv-bench)
cargo build --release --locked --quiet -p dkv --bin dkv-bench
before="$work/target/release/dkv-bench"
now="${CARGO_TARGET_DIR:-target}/release/dkv-bench"

IFS=, read -r -a WORKLOADS <<<"${WORKLOADS:-put 64,put 1,get 16}"
for round in $(seq "$ROUNDS"); do
    for workload in "${WORKLOADS[@]}"; do
        set -- $workload
        echo "plain     round=$round $("$before" --local 3 --op "$1" --clients "$2" --secs "$SECS" --json)"
        echo "peers-tls round=$round $("$now" --local 3 --op "$1" --clients "$2" --secs "$SECS" --json --blocking-clients)"
        echo "all-tls   round=$round $("$now" --local 3 --op "$1" --clients "$2" --secs "$SECS" --json --blocking-clients --secure-clients)"
    done
done
