#!/usr/bin/env bash
# End-to-end test of dkv on loopback, the seed's test.sh done properly.
#
# For UDP mode, then TCP mode: start a real 3-node cluster, run client instances doing puts,
# gets, updates, deletes and transactions with random values through different nodes, and
# check every answer (value and exit code). Then, while a client keeps writing, kill one node
# with -9, restart it, check that writes through the restarted node and through another node
# commit, that every acknowledged write is there on every node, and that the nodes agree on
# every write whose outcome the client did not learn (exit 5, unavailable; any other failure
# fails the test). The original project's text protocol is checked byte for byte on the same
# ports, spoken as its client.py speaks it. Last, with dkv-server --availability: kill -9 one
# node and keep it down, check that writes through the others commit within the detection
# bound, restart it, and check that it is added back and serves every write it missed; then
# delete a node's data dir while it runs, restart it at once, and check that it never answers
# "not found" for a write made before and serves every write once it has caught up. Servers
# are always stopped at the end (trap); any mismatch, and any command that fails unexpectedly,
# exits non-zero.
#
# Usage: ./test.sh            (builds the debug binaries first; set PROFILE=release to use those)
set -Eeuo pipefail
trap 'fail "line $LINENO: \"$BASH_COMMAND\" failed (exit $?)"' ERR
cd "$(dirname "$0")"

PROFILE=${PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [[ $PROFILE == release ]]; then
    cargo build --quiet --release -p dkv --bin dkv-server --bin dkv-client || exit 1
else
    cargo build --quiet -p dkv --bin dkv-server --bin dkv-client || exit 1
fi
SERVER=$TARGET_DIR/$PROFILE/dkv-server
CLIENT=$TARGET_DIR/$PROFILE/dkv-client

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dkv-test.XXXXXX")
declare -a PIDS=()
CHECKS=0
# Flags every node of the phase is started with, besides the transport's.
NODE_FLAGS=""

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        [[ -z $pid ]] || kill -9 "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    trap - ERR
    echo "FAIL: $*" >&2
    for log in "$WORK"/*.log; do
        [[ -f $log ]] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

random_value() { od -An -N8 -tx8 /dev/urandom | tr -d ' \n'; }

# A base port with nothing listening on the six ports we need: clients on BASE..BASE+2, peers
# on BASE+1000..BASE+1002 (dkv-server's default peer port is its client port plus 1000).
pick_base_port() {
    local base p busy
    for _ in $(seq 50); do
        # Below Linux's ephemeral range (32768 and up), so no outgoing connection can take
        # one of these ports before a server binds it.
        base=$((20000 + RANDOM % 11000))
        busy=0
        for p in $base $((base + 1)) $((base + 2)) $((base + 1000)) $((base + 1001)) $((base + 1002)); do
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && busy=1
        done
        [[ $busy == 0 ]] && { echo "$base"; return; }
    done
    fail "no free ports found"
}

# A cluster's first start gives every node --init (its data dir starts the new cluster); the
# restarts below are made both ways, without it (as an operator should) and with the first
# command line again (a data dir that holds a log ignores it).
start_node() { # id [--init]
    local id=$1 init=${2:-} peers="" j
    for j in 0 1 2; do
        [[ $j == "$id" ]] && continue
        peers+="${peers:+,}$j=127.0.0.1:$((BASE + 1000 + j))"
    done
    "$SERVER" --id "$id" -s 127.0.0.1 -p $((BASE + id)) --peers "$peers" $MODE_FLAG $NODE_FLAGS $init -l info \
        --credentials "$WORK/$CREDENTIALS/node-$id" \
        --data-dir "$WORK/$MODE/node-$id" >>"$WORK/$MODE-node-$id.log" 2>&1 &
    PIDS[$id]=$!
}

# Polls node `id` until it answers a read, within a deadline (no sleeping and hoping). Only
# "unavailable" (exit 5) means not yet; any other failure is one.
wait_ready() { # id
    local id=$1 deadline=$((SECONDS + 30)) rc
    while ((SECONDS < deadline)); do
        kill -0 "${PIDS[$id]}" 2>/dev/null || fail "node $id exited during start"
        rc=0
        "$CLIENT" $MODE_FLAG -p $((BASE + id)) --timeout 1 get __ready__ >/dev/null 2>"$WORK/client.err" || rc=$?
        [[ $rc == 0 || $rc == 3 ]] && return
        [[ $rc == 5 ]] || fail "node $id: a read while waiting for it gave exit $rc ($(cat "$WORK/client.err"))"
        sleep 0.1
    done
    fail "node $id did not answer within 30 s"
}

# expect EXIT_CODE EXPECTED_STDOUT NODE_ID CLIENT_ARGS...
expect() {
    local want_rc=$1 want_out=$2 node=$3 out rc
    shift 3
    rc=0
    out=$("$CLIENT" $MODE_FLAG -p $((BASE + node)) --timeout 15 "$@" 2>"$WORK/client.err") || rc=$?
    CHECKS=$((CHECKS + 1))
    if [[ $rc != "$want_rc" || $out != "$want_out" ]]; then
        fail "$MODE: dkv-client -p $((BASE + node)) $* gave exit $rc and '$out' ($(cat "$WORK/client.err")), expected exit $want_rc and '$want_out'"
    fi
}

declare -A EXPECTED # key -> value, or "" for not found

check_all_expected() { # on every node
    local node key
    for node in 0 1 2; do
        for key in "${!EXPECTED[@]}"; do
            if [[ -z ${EXPECTED[$key]} ]]; then
                expect 3 "" "$node" get "$key"
            else
                expect 0 "${EXPECTED[$key]}" "$node" get "$key"
            fi
        done
    done
}

# Writes keys w1..wN through node 0, one client instance per write, recording each exit code.
# A put either commits (0) or has no outcome (5, unavailable); anything else stops the writer
# with that exit code.
background_writer() { # count
    local j value rc
    for j in $(seq "$1"); do
        value=$(random_value)
        rc=0
        "$CLIENT" $MODE_FLAG -p "$BASE" --timeout 8 put "w$j" "$value" >/dev/null 2>"$WORK/$MODE-writer.err" || rc=$?
        echo "w$j $value $rc" >>"$WORK/$MODE-writes"
        [[ $rc == 0 || $rc == 5 ]] || exit "$rc"
    done
}

# expect_redis EXPECTED_OUTPUT NODE REDIS_CLI_ARGS...: redis-cli's raw output must be exactly this.
expect_redis() {
    local want=$1 node=$2 out
    shift 2
    out=$(timeout 20 redis-cli -p $((BASE + node)) "$@" 2>&1) || fail "redis-cli -p $((BASE + node)) $* failed: $out"
    CHECKS=$((CHECKS + 1))
    [[ $out == "$want" ]] || fail "redis-cli -p $((BASE + node)) $* printed '$out', expected '$want'"
}

# Redis's own client against the TCP cluster: commands through different nodes, MULTI/EXEC
# spanning keys, and a WATCH that loses a race to a write through another node.
redis_cli_phase() {
    if ! command -v redis-cli >/dev/null; then
        echo "   redis-cli not found (apt-get install -y redis-tools): skipping its checks"
        return
    fi
    expect_redis PONG 0 ping
    expect_redis OK 0 set greeting hello
    expect_redis hello 1 get greeting
    expect_redis 5 2 incrby counter 5
    expect_redis 4 0 decr counter
    expect_redis 0 1 setnx greeting other
    expect_redis $'hello\n4' 2 mget greeting counter nothing
    expect_redis "ERR dkv keeps every key until it is deleted: it has no expiry, so SET's EX option is not supported" 0 set k v EX 10
    expect_redis "ERR unknown command 'flushall', dkv does not support it" 1 flushall
    # MULTI/EXEC spanning keys, through node 0; read back through node 2.
    expect_redis $'OK\nQUEUED\nQUEUED\nQUEUED\nOK\nOK\n5' 0 <<<$'MULTI\nSET left L\nSET right R\nINCR counter\nEXEC'
    expect_redis $'L\nR\n5' 2 mget left right counter
    # SCAN through its cursors.
    expect_redis $'left\nright' 1 --scan --pattern '[lr]*'
    # WATCH loses a race: the watcher reads, a write through another node changes the key, and
    # the watcher's EXEC applies nothing (a null reply, an empty line in raw output).
    expect_redis OK 0 set balance 10
    coproc WATCHER { timeout 30 redis-cli -p "$BASE"; }
    local line
    ask_watcher() { # COMMAND EXPECTED_REPLY
        echo "$1" >&"${WATCHER[1]}"
        read -r -t 20 line <&"${WATCHER[0]}" || fail "the watching redis-cli did not answer $1"
        CHECKS=$((CHECKS + 1))
        [[ $line == "$2" ]] || fail "the watching redis-cli answered '$line' to $1, expected '$2'"
    }
    ask_watcher "WATCH balance" OK
    ask_watcher "GET balance" 10
    expect_redis OK 1 set balance 99
    ask_watcher MULTI OK
    ask_watcher "SET balance 9" QUEUED
    ask_watcher EXEC ""
    expect_redis 99 2 get balance
    ask_watcher "WATCH balance" OK
    ask_watcher MULTI OK
    ask_watcher "INCR balance" QUEUED
    ask_watcher EXEC 100
    echo QUIT >&"${WATCHER[1]}"
    wait "$WATCHER_PID" || fail "the watching redis-cli did not end cleanly on QUIT"
    echo "   redis-cli: commands, MULTI/EXEC across keys and a lost WATCH race answered as Redis would"
}

# One request of the original project's text protocol, sent the way its client.py sends it
# (a socket per request, one send, one recv of at most 1,024 bytes), to node `id` in this
# mode's transport; prints the reply.
original_request() { # id request
    python3 - "$MODE" $((BASE + $1)) "$2" <<'PY'
import socket, sys
mode, port, request = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = socket.SOCK_DGRAM if mode == "udp" else socket.SOCK_STREAM
sock = socket.socket(socket.AF_INET, kind)
sock.settimeout(15)
sock.connect(("127.0.0.1", port))
sock.send(request.encode())
reply = sock.recv(1024)
sock.close()
sys.stdout.write(reply.decode())
PY
}

# expect_original ID REQUEST EXPECTED_REPLY
expect_original() {
    local out
    out=$(original_request "$1" "$2" 2>"$WORK/client.err") || fail "$MODE: original request '$2' to node $1 failed: $(cat "$WORK/client.err")"
    CHECKS=$((CHECKS + 1))
    [[ $out == "$3" ]] || fail "$MODE: original request '$2' to node $1 got '$out', expected '$3'"
}

# The original text protocol on the same port, byte for byte, and the same data as dkv-client's.
original_protocol() {
    if ! command -v python3 >/dev/null; then
        echo "   no python3 here: the original protocol's phase is skipped"
        return
    fi
    local value
    value=$(random_value)
    expect_original 0 "1:orig:None" "1:key does not exist"
    expect_original 1 "0:orig:$value" "1:key does not exist"
    expect_original 2 "3:orig:$value" "0:Added"
    expect 0 "$value" 0 get orig
    expect_original 1 "1:orig:None" "0:$value"
    expect_original 2 "0:orig:$value-2" "0:updated"
    expect_original 0 "1:orig:None" "0:$value-2"
    expect_original 1 "2:orig:None" "0:deleted"
    expect_original 2 "2:orig:None" "1:key does not exist"
    expect 3 "" 1 get orig
    expect_original 0 "3:a:b:c" "1:Invalid input"
    expect_original 1 "7:orig:x" "1:Invalid input"
    EXPECTED[orig]=""
    echo "   the original text protocol answered byte for byte"
}

run_mode() { # udp | tcp
    MODE=$1
    MODE_FLAG=$([[ $MODE == udp ]] && echo -u || echo -t)
    BASE=$(pick_base_port)
    EXPECTED=()
    echo "== $MODE mode: 3 nodes on 127.0.0.1 ports $BASE-$((BASE + 2))"
    for id in 0 1 2; do start_node "$id" --init; done
    for id in 0 1 2; do wait_ready "$id"; done

    # Puts, gets, updates and deletes with random values, through different nodes.
    local i key value
    for i in $(seq 1 12); do
        key="k$i"
        value=$(random_value)
        expect 0 ok $((i % 3)) put "$key" "$value"
        expect 0 "$value" $(((i + 1) % 3)) get "$key"
        value=$(random_value)
        expect 0 ok $(((i + 2) % 3)) update "$key" "$value"
        expect 0 "$value" $((i % 3)) -o 1 -k "$key"
        EXPECTED[$key]=$value
        if ((i % 3 == 0)); then
            expect 0 ok $(((i + 1) % 3)) delete "$key"
            expect 3 "" $(((i + 2) % 3)) get "$key"
            EXPECTED[$key]=""
        fi
    done
    # The seed's flags: -o 3 put, -o 0 update, -o 2 delete; and not-found answers.
    value=$(random_value)
    expect 0 ok 1 -o 3 -k seed -v "$value"
    expect 0 ok 2 -o update -k seed -v "$value-2"
    expect 0 "$value-2" 0 -o get -k seed
    expect 0 ok 0 -o 2 -k seed
    expect 3 "" 1 update missing "$value"
    expect 3 "" 2 delete missing
    expect 3 "" 0 get missing
    EXPECTED[seed]=""
    EXPECTED[missing]=""

    # Transactions: all or nothing.
    local t1 t2
    t1=$(random_value)
    t2=$(random_value)
    expect 0 ok 1 txn "put:t1=$t1" "update:k1=$t2" delete:k2
    EXPECTED[t1]=$t1
    EXPECTED[k1]=$t2
    EXPECTED[k2]=""
    expect 4 "" 2 txn "put:t2=$t2" "update:k1=lost" delete:k2
    EXPECTED[t2]=""
    check_all_expected
    if [[ $MODE == tcp ]]; then redis_cli_phase; fi

    original_protocol
    check_all_expected

    # kill -9 one node while a client writes; restart it; nothing acknowledged may be lost.
    : >"$WORK/$MODE-writes"
    background_writer 30 &
    local writer=$!
    local deadline=$((SECONDS + 60))
    while (($(wc -l <"$WORK/$MODE-writes") < 8)); do
        ((SECONDS < deadline)) || fail "$MODE: the writer made no progress"
        kill -0 "$writer" 2>/dev/null || fail "$MODE: the background writer stopped early: $(tail -n 1 "$WORK/$MODE-writes"); $(cat "$WORK/$MODE-writer.err")"
        sleep 0.05
    done
    kill -9 "${PIDS[2]}"
    wait "${PIDS[2]}" 2>/dev/null || true
    echo "   killed node 2 with -9 after $(wc -l <"$WORK/$MODE-writes") writes; restarting it"
    start_node 2
    wait_ready 2
    # The restarted node takes part in commits again: a write through it and one through
    # another node must commit now (check_all_expected below reads both back on every node).
    value=$(random_value)
    expect 0 ok 2 put after-restart-via-2 "$value"
    EXPECTED[after-restart-via-2]=$value
    value=$(random_value)
    expect 0 ok 1 put after-restart-via-1 "$value"
    EXPECTED[after-restart-via-1]=$value
    local writer_rc=0
    wait "$writer" || writer_rc=$?
    [[ $writer_rc == 0 ]] ||
        fail "$MODE: the background writer exited with $writer_rc (last put: $(tail -n 1 "$WORK/$MODE-writes"); $(cat "$WORK/$MODE-writer.err"))"

    local acknowledged=0 unknown=0 k v rc node answer first
    while read -r k v rc; do
        if [[ $rc == 0 ]]; then
            acknowledged=$((acknowledged + 1))
            EXPECTED[$k]=$v
        elif [[ $rc == 5 ]]; then
            # Unavailable, no outcome learned: the write may or may not have happened, but
            # every node must agree, and the value can only be the one written.
            unknown=$((unknown + 1))
            first=""
            for node in 0 1 2; do
                rc=0
                answer=$("$CLIENT" $MODE_FLAG -p $((BASE + node)) --timeout 15 get "$k" 2>/dev/null) || rc=$?
                CHECKS=$((CHECKS + 1))
                [[ $rc == 0 && $answer == "$v" ]] || [[ $rc == 3 ]] || fail "$MODE: $k is '$answer' (exit $rc) on node $node"
                [[ -z $first ]] && first="$rc"
                [[ $rc == "$first" ]] || fail "$MODE: nodes disagree on $k"
            done
        else
            fail "$MODE: put $k gave exit $rc; a put either commits (0) or has no outcome (5)"
        fi
    done <"$WORK/$MODE-writes"
    check_all_expected
    echo "   after the restart, writes through node 2 and node 1 committed; $acknowledged acknowledged writes all present on every node; $unknown without outcome, consistent"

    # Clean shutdown on SIGTERM.
    stop_all_cleanly
    echo "   $MODE mode passed"
}

# Seconds since `start` (an $EPOCHREALTIME), to two decimals.
stop_all_cleanly() { # SIGTERM to every node; each must exit cleanly
    for id in 0 1 2; do kill -TERM "${PIDS[$id]}"; done
    for id in 0 1 2; do
        wait "${PIDS[$id]}" || fail "$MODE: node $id did not exit cleanly on SIGTERM"
        PIDS[$id]=""
    done
}

seconds_since() { # start
    awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.2f", now - start }'
}

# Polls `put KEY VALUE` through node `id` alone until it commits, within `limit` seconds; only
# "unavailable" (exit 5: not yet) is allowed meanwhile.
put_until_committed() { # id key value limit
    local id=$1 key=$2 value=$3 deadline=$((SECONDS + $4)) rc
    while ((SECONDS < deadline)); do
        rc=0
        "$CLIENT" -t -p $((BASE + id)) --timeout 2 put "$key" "$value" >/dev/null 2>"$WORK/client.err" || rc=$?
        CHECKS=$((CHECKS + 1))
        [[ $rc == 0 ]] && return
        [[ $rc == 5 ]] || fail "$MODE: put $key through node $id gave exit $rc ($(cat "$WORK/client.err"))"
    done
    fail "$MODE: put $key through node $id did not commit within $4 s ($(cat "$WORK/client.err"))"
}

# Polls `get KEY` at node `id` alone until it serves VALUE, within `limit` seconds; meanwhile
# only the exit codes in `allowed` are taken: by default "not found" (3) or "unavailable" (5:
# not serving yet).
read_until_served() { # id key value limit [allowed]
    local id=$1 key=$2 value=$3 deadline=$((SECONDS + $4)) allowed=${5:-"3 5"} rc out
    while ((SECONDS < deadline)); do
        rc=0
        out=$("$CLIENT" -t -p $((BASE + id)) --timeout 1 get "$key" 2>"$WORK/client.err") || rc=$?
        CHECKS=$((CHECKS + 1))
        [[ $rc == 0 && $out == "$value" ]] && return
        [[ " $allowed " == *" $rc "* ]] || fail "$MODE: get $key at node $id gave exit $rc and '$out' ($(cat "$WORK/client.err")); only exits $allowed may come before '$value'"
        sleep 0.05
    done
    fail "$MODE: node $id did not serve $key=$value within $4 s (last: exit $rc, $(cat "$WORK/client.err"))"
}

# Like read_until_served, for a key written before: "not found" (3) is a failure, only
# "unavailable" (5: not serving yet) is allowed meanwhile.
read_never_absent() { # id key value limit
    read_until_served "$1" "$2" "$3" "$4" 5
}

# dkv-server --availability (TCP): kill -9 one node of three and keep it down; writes through
# the others commit within the detection bound (removal ends within 3 s of detection_timeout);
# restart it; it is added back, catches up, and serves every write it missed. Then delete
# another node's data dir while it runs and restart it at once: it catches up before it serves.
availability_phase() {
    MODE=availability
    MODE_FLAG=-t
    NODE_FLAGS=--availability
    BASE=$(pick_base_port)
    EXPECTED=()
    echo "== --availability (TCP): 3 nodes on 127.0.0.1 ports $BASE-$((BASE + 2))"
    local id i value killed restarted out rc
    # Every node of a cluster runs the same way: the classic cluster's credentials refuse it.
    rc=0
    out=$(timeout 10 "$SERVER" --id 0 -s 127.0.0.1 -p "$BASE" -t --availability --credentials "$WORK/credentials/node-0" \
        --data-dir "$WORK/refused" 2>&1) || rc=$?
    [[ $rc != 0 && $out == *"record that it runs without it"* ]] ||
        fail "a node given --availability with credentials of a cluster without it started (exit $rc: $out)"
    CHECKS=$((CHECKS + 1))
    echo "   --availability refused with credentials made without it"
    CREDENTIALS=credentials-availability
    "$SERVER" init "$WORK/$CREDENTIALS" --ids 0,1,2 --availability >/dev/null || fail "dkv-server init --availability failed"
    for id in 0 1 2; do start_node "$id" --init; done
    for id in 0 1 2; do wait_ready "$id"; done
    value=$(random_value)
    expect 0 ok 0 put before "$value"
    EXPECTED[before]=$value

    kill -9 "${PIDS[2]}"
    wait "${PIDS[2]}" 2>/dev/null || true
    killed=$EPOCHREALTIME
    value=$(random_value)
    put_until_committed 0 missed-0 "$value" 10
    EXPECTED[missed-0]=$value
    echo "   killed node 2 with -9 and kept it down: a write through node 0 committed $(seconds_since "$killed") s after the kill"
    for i in 1 2 3 4; do
        value=$(random_value)
        expect 0 ok $((i % 2)) put "missed-$i" "$value"
        EXPECTED[missed-$i]=$value
    done

    # Restarted with its first command line, --init included: its log holds records, so the
    # flag is ignored (and the node says so). And without --availability: the cluster's
    # credentials say how it runs (a node that ran without would serve its stale copy).
    NODE_FLAGS=""
    start_node 2 --init
    NODE_FLAGS=--availability
    restarted=$EPOCHREALTIME
    for i in 0 1 2 3 4; do read_until_served 2 "missed-$i" "${EXPECTED[missed-$i]}" 45; done
    echo "   restarted node 2: it served all 5 writes it missed, from its own copy, $(seconds_since "$restarted") s after the restart"
    CHECKS=$((CHECKS + 1))
    grep -q "caught up: started again from the member's state" "$WORK/$MODE-node-2.log" ||
        fail "$MODE: node 2 serves, but its log does not say it caught up from a member"
    CHECKS=$((CHECKS + 1))
    grep -q -- "--init ignored" "$WORK/$MODE-node-2.log" ||
        fail "$MODE: node 2 was restarted with --init on its log, and its log does not say the flag was ignored"
    value=$(random_value)
    put_until_committed 2 after-rejoin "$value" 15
    EXPECTED[after-rejoin]=$value
    # With leases, a node may answer "not serving" for a moment around a change: wait for each.
    for id in 0 1 2; do wait_ready "$id"; done
    check_all_expected
    echo "   a write through node 2 committed; every write is on every node"

    # Issue 12's hazard: node 1's data dir deleted while it runs, node 1 killed and restarted at
    # once (without --init, as an operator restarts a node), before the others could remove it.
    # It must not serve from its empty log: reads at it say "unavailable" (not serving) until it
    # has caught up, never "not found"; writes through the others commit meanwhile.
    rm -rf "$WORK/$MODE/node-1"
    kill -9 "${PIDS[1]}"
    wait "${PIDS[1]}" 2>/dev/null || true
    start_node 1
    restarted=$EPOCHREALTIME
    value=$(random_value)
    put_until_committed 0 after-wipe "$value" 15
    echo "   deleted node 1's data dir while it ran, restarted it at once: a write through node 0 committed $(seconds_since "$restarted") s after the restart"
    for key in "${!EXPECTED[@]}"; do read_never_absent 1 "$key" "${EXPECTED[$key]}" 45; done
    EXPECTED[after-wipe]=$value
    read_until_served 1 after-wipe "$value" 15
    echo "   node 1 never answered \"not found\" for a write made before the wipe, and served every write $(seconds_since "$restarted") s after the restart"
    CHECKS=$((CHECKS + 1))
    grep -q "holds no log and --init was not given" "$WORK/$MODE-node-1.log" ||
        fail "$MODE: node 1 restarted on an emptied data dir, and its log does not say it must catch up first"

    # The same to node 2, restarted with --init still on its command line (the first start's,
    # kept): it asks the others whether the cluster is new, hears that it is not, and catches up
    # instead of bootstrapping an empty store (docs/protocol.md §7.1).
    rm -rf "$WORK/$MODE/node-2"
    kill -9 "${PIDS[2]}"
    wait "${PIDS[2]}" 2>/dev/null || true
    start_node 2 --init
    restarted=$EPOCHREALTIME
    value=$(random_value)
    put_until_committed 0 after-wipe-init "$value" 15
    for key in "${!EXPECTED[@]}"; do read_never_absent 2 "$key" "${EXPECTED[$key]}" 45; done
    EXPECTED[after-wipe-init]=$value
    read_until_served 2 after-wipe-init "$value" 15
    echo "   deleted node 2's data dir while it ran, restarted it with --init: it never answered \"not found\" for a write made before, and served every write $(seconds_since "$restarted") s after the restart"
    CHECKS=$((CHECKS + 1))
    grep -q "another node already holds this cluster's state" "$WORK/$MODE-node-2.log" ||
        fail "$MODE: node 2 restarted with --init on an emptied data dir, and its log does not say it catches up instead"
    value=$(random_value)
    put_until_committed 1 after-wipe-via-1 "$value" 15
    EXPECTED[after-wipe-via-1]=$value
    for id in 0 1 2; do wait_ready "$id"; done
    check_all_expected
    echo "   a write through node 1 committed; every write is on every node"

    stop_all_cleanly
    NODE_FLAGS=""
    echo "   --availability passed"
}

# The cluster's credentials, made as an operator makes them: peers prove they are members.
CREDENTIALS=credentials
"$SERVER" init "$WORK/$CREDENTIALS" --ids 0,1,2 >/dev/null || fail "dkv-server init failed"
run_mode udp
run_mode tcp
availability_phase
echo "PASS: $CHECKS checks"
