//! dkv-bench end to end: an in-process cluster under a short load reports, as one JSON line,
//! the fields the etcd side reports too, with completed requests and no errors. Only outcomes
//! are checked, never timings.

use std::process::Command;

/// `--local 3 --json` for every op, with the clients driven by two threads (three clients, so
/// the threads have unequal shares), on a thread each, and with the nodes' availability on
/// (reads then need leases): the line parses, ops were completed, none failed.
#[test]
fn bench_against_a_local_cluster_reports_ops_and_no_errors() {
    let runs = ["put", "get", "txn", "mix"].map(|op| (op, "")).into_iter().chain([
        ("put", "--blocking-clients"),
        ("get", "--blocking-clients"),
        ("put", "--availability"),
        ("get", "--availability"),
    ]);
    for (op, flag) in runs {
        let mut args = vec!["--local", "3", "--secs", "0.5", "--clients", "3", "--keys", "50", "--json", "--op", op];
        if !flag.is_empty() {
            args.push(flag);
        }
        let output = Command::new(env!("CARGO_BIN_EXE_dkv-bench")).args(&args).output().expect("dkv-bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{op} {flag}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(report["op"], op);
        assert_eq!(report["availability"], flag == "--availability", "{op} {flag}: {report}");
        assert!(report["ops"].as_u64().unwrap() > 0, "{op}: {report}");
        assert_eq!(report["errors"].as_u64(), Some(0), "{op}: {report}");
        for field in ["ops_per_s", "p50_us", "p99_us", "p999_us"] {
            assert!(report[field].is_number(), "{op}: {field} missing in {report}");
        }
    }
}

/// Nothing listens where the clients are sent: the run fails at once, saying why, rather than
/// reporting a run without ops.
#[test]
fn bench_without_a_cluster_fails_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let output = Command::new(env!("CARGO_BIN_EXE_dkv-bench"))
        .args(["--nodes", &addr, "--secs", "0.5", "--clients", "2", "--json", "--op", "put"])
        .output()
        .expect("dkv-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot drive the clients"), "{stderr}");
}
