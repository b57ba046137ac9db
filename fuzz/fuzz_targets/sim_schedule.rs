//! The fuzzer chooses the fault schedule of a simulated run — which messages are lost,
//! duplicated or delayed, when nodes crash, when the network partitions — and every one of the
//! simulator's checkers must pass.
#![no_main]

use dkv_sim::{RunOptions, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((seed, script)) = data.split_first_chunk::<2>() else { return };
    let options = RunOptions::scripted(script.to_vec());
    let report = run(u64::from(u16::from_le_bytes(*seed)), &options);
    if !report.passed() {
        let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        panic!(
            "seed {} with the fuzzer's fault script failed:\n{}\nreplay: dkv-sim run --setup '{}' (or shrink it: dkv-sim shrink --setup '…')",
            report.seed,
            violations.join("\n"),
            report.setup
        );
    }
});
