//! The dkv-client program as users and scripts meet it, run as a real process against real
//! dkv-server processes on loopback: every exit code it documents (1 to 6) reached the way a
//! user reaches it, the fields of its `--json` output, and fail-over between the nodes given
//! with `-p` and `-n`.

mod common;

use common::{ClientRun, Mode, ProcessCluster, run_client};
use dkv_net::testing::free_ports;
use serde_json::{Value, json};
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// Checks a run's exit code and stdout, and that stderr says `stderr_has`.
#[track_caller]
fn assert_run(run: &ClientRun, code: i32, stdout: &str, stderr_has: &str) {
    assert_eq!((run.code, run.stdout.as_str()), (code, stdout), "{run:?}");
    assert!(run.stderr.contains(stderr_has), "stderr should say {stderr_has:?}: {run:?}");
}

/// The one JSON object a `--json` run prints, its `error` field taken out (checked by the
/// caller), and the exit code it reports checked against the process's.
#[track_caller]
fn json_of(run: &ClientRun) -> (Value, Option<String>) {
    assert_eq!(run.stdout.lines().count(), 1, "--json prints one line: {run:?}");
    let mut object: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(object["exit_code"], json!(run.code), "the JSON tells the exit code: {run:?}");
    let error = object.as_object_mut().expect("an object").remove("error");
    (object, error.map(|e| e.as_str().expect("error is text").to_string()))
}

/// `127.0.0.1:PORT` of a loopback port nothing listens on, for TCP or UDP.
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_ports(1)[0])
}

/// Exit 2: flags or arguments that cannot make a request are refused before anything is sent,
/// with a message saying what to fix and nothing on stdout.
#[test]
fn usage_errors_exit_2_and_say_what_to_fix() {
    // Nothing listens there: only the usage check can answer.
    let port = free_ports(1)[0].to_string();
    let big = "x".repeat(70_000);
    let cases: &[(&[&str], &str)] = &[
        (&[], "say what to do"),
        (&["-o", "3", "-k", "k"], "need a value: add -v VALUE"),
        (&["-o", "9", "-k", "k"], "is not an operation"),
        (&["-o", "1"], "-o needs a key"),
        (&["txn", "bogus"], "is not an op"),
        (&["--timeout", "0", "get", "k"], "--timeout must be a number of seconds"),
        // Past the retry window a node may have forgotten the request was done.
        (&["--timeout", "46", "put", "k", "v"], "could be applied twice"),
        (&["--no-such-flag", "get", "k"], "unexpected argument"),
        (&["-t", "-u", "get", "k"], "cannot be used with"),
        (&["--user-file", "/nonexistent/dkv.user", "get", "k"], "/nonexistent/dkv.user"),
        // A request that cannot fit one datagram is refused before it is sent.
        (&["-u", "put", "k", &big], "more than one UDP datagram holds"),
    ];
    for (args, says) in cases {
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        let run = run_client(&all);
        assert_run(&run, 2, "", says);
    }
}

/// Exit 2 also for a request the cluster refuses as invalid: in UDP mode a value over the
/// lowered 48 KiB limit is rejected by the node, and nothing is applied.
#[test]
fn a_request_the_cluster_refuses_as_invalid_exits_2() {
    let cluster = ProcessCluster::start(Mode::Udp);
    let value = "x".repeat(50_000);
    let run = cluster.run_client_full(0, &["put", "k", &value]);
    assert_run(&run, 2, "", "rejected, nothing was applied");
    for node in 0..3 {
        assert_run(&cluster.run_client_full(node, &["get", "k"]), 3, "", "not found");
    }
}

/// A read whose reply is too large for a datagram exits 2, as a request too large does: a
/// 70 KB value written over TCP and read over UDP (the message says to use TCP; over TCP the
/// same read succeeds). Exit 1: the node answers with bytes that are not dkv frames (a client
/// pointed at a node's peer port, which speaks only TLS to members and answers a plain frame
/// with a TLS alert).
#[test]
fn a_reply_too_large_for_udp_exits_2_and_a_node_refusing_the_request_exits_1() {
    let cluster = ProcessCluster::start(Mode::Both);
    let value = "v".repeat(70_000);
    assert_run(&cluster.run_client_full(0, &["-t", "put", "big", &value]), 0, "ok", "");
    let run = cluster.run_client_full(1, &["-u", "get", "big"]);
    assert_run(&run, 2, "", "more than one UDP datagram holds");
    assert!(run.stderr.contains("Ask over TCP (-t)"), "the message says what to do: {run:?}");
    let (object, error) = json_of(&cluster.run_client_full(1, &["-u", "--json", "get", "big"]));
    assert_eq!(object, json!({"ok": false, "op": "get", "key": "big", "outcome": "error", "exit_code": 2}));
    assert!(error.is_some_and(|e| e.contains("a read changes nothing")));
    assert_run(&cluster.run_client_full(2, &["-t", "get", "big"]), 0, &value, "");
    let peer_port = cluster.peer_ports[0].to_string();
    let run = run_client(&["-t", "-p", &peer_port, "--timeout", "10", "get", "big"]);
    assert_run(&run, 1, "", "refused the request: not a dkv frame");
}

/// Exit 5 with nothing listening at the address, over TCP and over UDP: no outcome, and the
/// message says what to check.
#[test]
fn nothing_listening_exits_5() {
    for transport in ["-t", "-u"] {
        let addr = dead_addr();
        let (host, port) = addr.split_once(':').unwrap();
        let started = Instant::now();
        let run = run_client(&[transport, "-s", host, "-p", port, "--timeout", "10", "put", "k", "v"]);
        assert_run(&run, 5, "", "is dkv-server running?");
        assert!(run.stderr.contains(&addr), "the message names the address: {run:?}");
        // Refused at once, not waited out.
        assert!(started.elapsed() < Duration::from_secs(8), "{transport}: took {:?}", started.elapsed());
    }
}

/// Exit 5 when a member is down (writes need every member; reads fail over and are served),
/// and when every node given is down.
#[test]
fn a_member_down_or_all_nodes_down_exits_5() {
    let mut cluster = ProcessCluster::start(Mode::Tcp);
    assert_run(&cluster.run_client_full(0, &["put", "k", "before"]), 0, "ok", "");
    let nodes = format!("{},{}", cluster.addr(0), cluster.addr(1));
    cluster.kill(2);
    // Node 2 was asked first: the client fails over to node 0, which cannot commit without it.
    let run = cluster.run_client_full(2, &["-n", &nodes, "--timeout", "3", "put", "k", "during"]);
    assert_run(&run, 5, "", "Writes need every node");
    assert!(run.stderr.contains("may or may not have been applied"), "{run:?}");
    // A read fails over the same way and is served.
    assert_run(&cluster.run_client_full(2, &["-n", &nodes, "get", "k"]), 0, "before", "");
    cluster.kill(0);
    cluster.kill(1);
    let run = cluster.run_client_full(2, &["-n", &nodes, "--timeout", "10", "get", "k"]);
    assert_run(&run, 5, "", "cannot reach");
    for i in 0..3 {
        assert!(run.stderr.contains(&cluster.addr(i).to_string()), "every address is named: {run:?}");
    }
}

/// Exit 6 on a cluster whose nodes run with --require-auth: a client that is no user, and a
/// user whose role does not allow the request, are refused and nothing is applied; a user
/// whose role allows it is served. Over TCP a user's token travels inside TLS; over UDP each
/// datagram is signed.
fn permission_denied_exits_6(mode: Mode) {
    let cluster = ProcessCluster::start_requiring_users(mode);
    let client_dir = cluster.client_credentials();
    let tls = client_dir.to_str().unwrap().to_string();
    let user = |name: &str| {
        let file = client_dir.join(format!("{name}.user")).to_str().unwrap().to_string();
        match mode {
            Mode::Udp => vec!["--user-file".to_string(), file],
            _ => vec!["--tls".to_string(), tls.clone(), "--user-file".to_string(), file],
        }
    };
    let (admin, viewer) = (user("admin"), user("viewer"));
    let run_as = |node, user: &[String], args: &[&str]| {
        let mut all: Vec<&str> = user.iter().map(String::as_str).collect();
        all.extend(args);
        cluster.run_client_full(node, &all)
    };

    assert_run(&run_as(0, &[], &["put", "k", "v"]), 6, "", "authenticated clients only");
    assert_run(&run_as(1, &[], &["get", "k"]), 6, "", "authenticated clients only");
    assert_run(&run_as(2, &viewer, &["put", "k", "v"]), 6, "", "may only read");
    let (object, error) = json_of(&run_as(0, &viewer, &["--json", "delete", "k"]));
    assert_eq!(object, json!({"ok": false, "op": "delete", "key": "k", "outcome": "denied", "exit_code": 6}));
    assert!(error.is_some_and(|e| e.contains("may only read")));
    // Nothing of the refused writes was applied; the users' roles are served.
    assert_run(&run_as(0, &admin, &["get", "k"]), 3, "", "");
    assert_run(&run_as(1, &admin, &["put", "k", "w"]), 0, "ok", "");
    assert_run(&run_as(2, &viewer, &["get", "k"]), 0, "w", "");
}

#[test]
fn permission_denied_exits_6_over_tcp() {
    permission_denied_exits_6(Mode::Tcp);
}

#[test]
fn permission_denied_exits_6_over_udp() {
    permission_denied_exits_6(Mode::Udp);
}

/// `--json` prints one object per run: ok, op, key (not for txn), outcome, value and version
/// (for a found get), results (for a txn), op_index (of a failed op), error (for anything but
/// success) and exit_code,
/// matching the exit status.
#[test]
fn json_output_has_the_documented_fields() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let json_run = |node, args: &[&str]| json_of(&cluster.run_client_full(node, &[&["--json"], args].concat()));

    let ok = |object: Value| (object, None::<String>);
    assert_eq!(
        json_run(0, &["put", "k", "v1"]),
        ok(json!({"ok": true, "op": "put", "key": "k", "outcome": "committed", "exit_code": 0}))
    );
    assert_eq!(
        json_run(1, &["get", "k"]),
        ok(
            json!({"ok": true, "op": "get", "key": "k", "outcome": "value", "value": "v1", "version": 1, "exit_code": 0})
        )
    );
    assert_eq!(
        json_run(2, &["txn", "put:a=1", "update:k=v2"]),
        ok(json!({"ok": true, "op": "txn", "outcome": "committed", "exit_code": 0,
                  "results": [{"version": 1}, {"version": 2}]}))
    );

    let (object, error) = json_run(0, &["get", "missing"]);
    assert_eq!(object, json!({"ok": false, "op": "get", "key": "missing", "outcome": "not_found", "exit_code": 3}));
    assert_eq!(error.as_deref(), Some("not found: key 'missing' does not exist"));
    let (object, error) = json_run(1, &["update", "missing", "x"]);
    assert_eq!(object, json!({"ok": false, "op": "update", "key": "missing", "outcome": "not_found", "exit_code": 3}));
    assert!(error.is_some_and(|e| e.contains("needs key 'missing' to exist") && e.contains("nothing was changed")));
    let (object, error) = json_run(2, &["txn", "put:b=1", "delete:missing"]);
    assert_eq!(object, json!({"ok": false, "op": "txn", "outcome": "failed", "op_index": 1, "exit_code": 4}));
    assert!(error.is_some_and(|e| e.contains("nothing was applied")));

    // Unavailable: nothing listens at the only address given.
    let addr = dead_addr();
    let (host, port) = addr.split_once(':').unwrap();
    let run = run_client(&["--json", "-s", host, "-p", port, "put", "k", "v"]);
    let (object, error) = json_of(&run);
    assert_eq!(object, json!({"ok": false, "op": "put", "key": "k", "outcome": "unavailable", "exit_code": 5}));
    assert!(error.is_some_and(|e| e.contains("cannot reach") && e.contains(&addr)));
    // What succeeded is there; what failed applied nothing.
    assert_eq!(json_run(1, &["get", "k"]).0["value"], json!("v2"));
    assert_eq!(json_run(2, &["get", "a"]).0["value"], json!("1"));
    assert_eq!(json_run(0, &["get", "b"]).0["outcome"], json!("not_found"));
}

/// The node tried first does not answer: the write goes to the next node given with -n,
/// commits once, and every node has it. A member that is down blocks writes (they need every
/// member), so the address that is down here is not a member: a port nothing listens on, then
/// one that takes the request and never answers (the client waits its attempt timeout, 3 s).
fn a_write_fails_over_to_the_next_node(mode: Mode) {
    let cluster = ProcessCluster::start(mode);
    let rest = format!("{},{}", cluster.addr(1), cluster.addr(2));
    let client = |first: &str, args: &[&str]| {
        let (host, port) = first.split_once(':').unwrap();
        let mut all = mode.flags().to_vec();
        all.extend(["-s", host, "-p", port, "-n", &rest, "--timeout", "15"]);
        all.extend(args);
        run_client(&all)
    };

    assert_run(&client(&dead_addr(), &["put", "refused-first", "1"]), 0, "ok", "");

    // A black hole: it takes the request (TCP: the connection is accepted by the kernel) and
    // never answers.
    let black_hole_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let black_hole_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let black_hole = match mode {
        Mode::Udp => black_hole_udp.local_addr().unwrap(),
        _ => black_hole_tcp.local_addr().unwrap(),
    };
    let started = Instant::now();
    assert_run(&client(&black_hole.to_string(), &["put", "silent-first", "2"]), 0, "ok", "");
    assert!(started.elapsed() >= Duration::from_secs(3), "failed over before the attempt timeout");
    // The black hole was asked first: it holds the request's bytes.
    let mut bytes = [0u8; 4096];
    let received = match mode {
        Mode::Udp => {
            black_hole_udp.set_nonblocking(true).unwrap();
            black_hole_udp.recv(&mut bytes).expect("the request came to the black hole")
        }
        _ => {
            black_hole_tcp.set_nonblocking(true).unwrap();
            let (mut stream, _) = black_hole_tcp.accept().expect("the client connected to the black hole");
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            stream.read(&mut bytes).expect("the request came to the black hole")
        }
    };
    assert!(bytes[..received].starts_with(b"dkv"), "a dkv frame: {:?}", &bytes[..received.min(16)]);

    for node in 0..3 {
        assert_run(&cluster.run_client_full(node, &["get", "refused-first"]), 0, "1", "");
        assert_run(&cluster.run_client_full(node, &["get", "silent-first"]), 0, "2", "");
    }
}

#[test]
fn a_write_fails_over_to_the_next_node_over_tcp() {
    a_write_fails_over_to_the_next_node(Mode::Tcp);
}

#[test]
fn a_write_fails_over_to_the_next_node_over_udp() {
    a_write_fails_over_to_the_next_node(Mode::Udp);
}

/// `cas`, `incr`, conditions and reads in `txn`, and `scan`, as the README and `--help` show
/// them: results on stdout, a condition that does not hold exits 7 (nothing applied), a
/// counter on a value that is not a number exits 4, and a scan follows its pages to the end.
#[test]
fn cas_incr_conditions_and_scan_exit_as_documented() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let run = |node, args: &[&str]| cluster.run_client_full(node, args);
    assert_run(&run(0, &["put", "lock", "free"]), 0, "ok", "");
    assert_run(&run(1, &["cas", "lock", "free", "mine"]), 0, "ok", "");
    assert_run(&run(2, &["cas", "lock", "free", "theirs"]), 7, "", "condition failed: key 'lock' is not holding");
    assert_run(&run(0, &["get", "lock"]), 0, "mine", "");
    assert_run(&run(1, &["cas", "--version-equals", "0", "fresh", "1"]), 0, "ok", "");
    assert_run(&run(2, &["cas", "--version-equals", "0", "fresh", "2"]), 7, "", "is not absent");
    assert_run(&run(0, &["cas", "--version-equals", "1", "fresh", "3"]), 0, "ok", "");
    assert_run(&run(1, &["cas", "lock", "mine"]), 2, "", "cas needs KEY EXPECTED NEW");

    assert_run(&run(0, &["incr", "n"]), 0, "1", "");
    assert_run(&run(1, &["incr", "n", "5"]), 0, "6", "");
    assert_run(&run(2, &["incr", "n", "-10"]), 0, "-4", "");
    assert_run(&run(2, &["incr", "lock"]), 4, "", "not a decimal 64-bit integer");

    let txn = ["txn", "if:lock=mine", "if-exists:n", "put:stock=0", "incr:sold=3", "read:lock", "read:nothing"];
    assert_run(&run(0, &txn), 0, "ok\nincr:sold=3\nread:lock=mine\nread:nothing", "");
    assert_run(
        &run(1, &["txn", "if-absent:lock", "put:x=1"]),
        7,
        "",
        "condition failed: op 0 (if-absent:lock) does not hold; nothing was applied",
    );
    assert_run(&run(2, &["txn", "put:x=1", "if-version:lock=1"]), 7, "", "op 1 (if-version:lock=1)");
    assert_run(&run(0, &["get", "x"]), 3, "", "does not exist");
    assert_run(&run(0, &["txn", "if-version:lock=2", "put:x=2"]), 0, "ok", "");
    assert_run(&run(1, &["txn", "if-version:lock=two"]), 2, "", "the version must be a whole number");

    for key in ["user/1", "user/2", "user/3", "user/4", "user/5", "users"] {
        assert_run(&run(0, &["put", key, &format!("v-{key}")]), 0, "ok", "");
    }
    let all = "user/1\tv-user/1\nuser/2\tv-user/2\nuser/3\tv-user/3\nuser/4\tv-user/4\nuser/5\tv-user/5";
    assert_run(&run(1, &["scan", "--prefix", "user/", "--page-keys", "2"]), 0, all, "");
    assert_run(&run(2, &["scan", "--prefix", "user/", "--limit", "3", "--keys-only"]), 0, "user/1\nuser/2\nuser/3", "");
    assert_run(&run(0, &["scan", "--from", "user/4", "--to", "users", "--keys-only"]), 0, "user/4\nuser/5", "");
    assert_run(&run(0, &["scan", "--limit", "0"]), 2, "", "--limit must be at least 1");
}

/// `--json` for the new results: a get's version, a txn's results per op, a scan's entries
/// and where a limited scan stopped, a failed condition's op.
#[test]
fn json_output_of_versions_results_and_scans() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let json_run = |node, args: &[&str]| json_of(&cluster.run_client_full(node, &[&["--json"], args].concat()));
    json_run(0, &["put", "k", "v1"]);
    json_run(1, &["put", "k", "v2"]);
    assert_eq!(
        json_run(2, &["get", "k"]).0,
        json!({"ok": true, "op": "get", "key": "k", "outcome": "value", "value": "v2", "version": 2, "exit_code": 0})
    );
    assert_eq!(
        json_run(0, &["txn", "if:k=v2", "incr:n=4", "read:k", "read:none"]).0,
        json!({"ok": true, "op": "txn", "outcome": "committed", "exit_code": 0, "results": [
            {"version": 2}, {"integer": 4, "version": 1}, {"value": "v2", "version": 2}, {"value": null, "version": 0}
        ]})
    );
    assert_eq!(
        json_run(1, &["incr", "n", "-1"]).0,
        json!({"ok": true, "op": "incr", "key": "n", "outcome": "committed", "value": 3, "exit_code": 0})
    );
    assert_eq!(
        json_run(2, &["scan", "--limit", "1"]).0,
        json!({"ok": true, "op": "scan", "outcome": "scanned", "exit_code": 0,
               "entries": [{"key": "k", "value": "v2", "version": 2}], "next": "k\u{0}"})
    );
    let (object, error) = json_run(0, &["cas", "k", "v1", "v3"]);
    assert_eq!(
        object,
        json!({"ok": false, "op": "cas", "key": "k", "outcome": "condition_failed", "op_index": 0, "exit_code": 7})
    );
    assert!(error.is_some_and(|e| e.contains("nothing was applied")));
}

/// Keys and values are any bytes, on the command line too, and a value can come from a file or
/// standard input (--value-file), past what one command-line argument may hold (about 128 KiB
/// on Linux; a user could not write such a value before).
#[test]
fn binary_arguments_and_values_from_a_file_or_standard_input() {
    use std::ffi::OsStr;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::process::Stdio;
    let cluster = ProcessCluster::start(Mode::Tcp);
    let port = cluster.ports[0].to_string();
    let client = |args: &[&OsStr], stdin: &[u8]| {
        let mut child = std::process::Command::new(common::CLIENT)
            .args(["-t", "-p", &port, "--timeout", "15"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The client may stop reading early (a value over the limit), and exit.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let output = child.wait_with_output().unwrap();
        (output.status.code(), output.stdout)
    };
    let os = |s: &str| OsStr::new(s).to_os_string();
    let key = OsStr::from_bytes(b"bin\xff\xfekey").to_os_string();
    let value = OsStr::from_bytes(b"\x01\xff value").to_os_string();
    let (code, _) = client(&[&os("put"), &key, &value], b"");
    assert_eq!(code, Some(0), "a put of bytes that are not UTF-8");
    let (code, stdout) = client(&[&os("get"), &key], b"");
    assert_eq!((code, stdout), (Some(0), b"\x01\xff value\n".to_vec()));

    // 200 KB from standard input, then from a file.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (code, _) = client(&[&os("put"), &os("big"), &os("--value-file"), &os("-")], &big);
    assert_eq!(code, Some(0));
    let (code, stdout) = client(&[&os("get"), &os("big")], b"");
    assert_eq!(code, Some(0));
    assert_eq!(stdout[..stdout.len() - 1], big[..], "the value read back is the one sent");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value");
    std::fs::write(&file, b"from a file").unwrap();
    let (code, _) = client(&[&os("update"), &os("big"), &os("--value-file"), file.as_os_str()], b"");
    assert_eq!(code, Some(0));
    assert_eq!(client(&[&os("get"), &os("big")], b"").1, b"from a file\n".to_vec());
    // A value over the node's limit is refused (exit 2), read no further than one byte past it.
    let too_big = vec![b'x'; 1024 * 1024 + 10];
    let (code, _) = client(&[&os("put"), &os("huge"), &os("--value-file"), &os("-")], &too_big);
    assert_eq!(code, Some(2));
}
