//! dkv-torture as a process, briefly, over TCP and over UDP: real nodes under kill -9 and
//! pauses (and partitions where the machine lets the tool make its own network namespace),
//! checked by the simulator's checkers. Each test asserts that the history was not trivial
//! (hundreds of completed ops, kills and pauses really injected) and that nothing was found.

use std::collections::BTreeMap;
use std::process::Command;

const TORTURE: &str = env!("CARGO_BIN_EXE_dkv-torture");

/// The `key=value` pairs of the tool's `summary:` line.
fn run_torture(args: &[&str]) -> (i32, BTreeMap<String, String>, String) {
    let output = Command::new(TORTURE).args(args).output().expect("dkv-torture runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .map(|line| {
            line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
        })
        .unwrap_or_default();
    (output.status.code().unwrap_or(-1), summary, all)
}

/// Partitions need a network namespace of the tool's own (root and `unshare`); without one
/// the run goes on with the other faults, and says so.
fn faults() -> &'static str {
    let namespace = Command::new("unshare").args(["-n", "true"]).output().is_ok_and(|o| o.status.success());
    if namespace {
        "kill,kill-all,pause,partition"
    } else {
        eprintln!("no network namespace here (not root?): torturing without partitions");
        "kill,kill-all,pause"
    }
}

fn count(summary: &BTreeMap<String, String>, key: &str) -> u64 {
    summary.get(key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in the summary: {summary:?}"))
}

fn torture_finds_nothing(transport: &str, seed: &str) {
    let faults = faults();
    let args = ["--duration", "14", "--transport", transport, "--seed", seed, "--faults", faults];
    let (code, summary, output) = run_torture(&args);
    assert_eq!(code, 0, "dkv-torture found something or failed:\n{output}");
    assert_eq!(summary.get("verdict").map(String::as_str), Some("pass"), "{output}");
    assert_eq!(count(&summary, "violations"), 0, "{output}");
    assert!(count(&summary, "completed") >= 300, "too few completed ops to mean anything:\n{output}");
    assert!(count(&summary, "kill") + count(&summary, "kill_all") >= 1, "no kill was injected:\n{output}");
    assert!(count(&summary, "pause") >= 1, "no pause was injected:\n{output}");
    if faults.contains("partition") {
        assert!(count(&summary, "partition") >= 1, "no partition was injected:\n{output}");
    }
}

/// Seed 1's schedule opens with a partition, kills, a kill of every node and pauses.
#[test]
fn torture_over_tcp_finds_nothing() {
    torture_finds_nothing("tcp", "1");
}

/// The same schedule over UDP.
#[test]
fn torture_over_udp_finds_nothing() {
    torture_finds_nothing("udp", "1");
}
