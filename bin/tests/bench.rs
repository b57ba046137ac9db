//! dkv-bench end to end: an in-process cluster under a short load reports, as one JSON line,
//! the fields the etcd side reports too, with completed requests and no errors. Only outcomes
//! are checked, never timings.

use std::process::Command;

/// `--local 3 --json` for every op: the line parses, ops were completed, none failed.
#[test]
fn bench_against_a_local_cluster_reports_ops_and_no_errors() {
    for op in ["put", "get", "txn", "mix"] {
        let output = Command::new(env!("CARGO_BIN_EXE_dkv-bench"))
            .args(["--local", "3", "--secs", "0.5", "--clients", "2", "--keys", "50", "--json", "--op", op])
            .output()
            .expect("dkv-bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{op}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(report["op"], op);
        assert!(report["ops"].as_u64().unwrap() > 0, "{op}: {report}");
        assert_eq!(report["errors"].as_u64(), Some(0), "{op}: {report}");
        for field in ["ops_per_s", "p50_us", "p99_us", "p999_us"] {
            assert!(report[field].is_number(), "{op}: {field} missing in {report}");
        }
    }
}
