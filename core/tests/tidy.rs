//! Tidy: mechanical rules that keep the core sans-IO and deterministic, as a ratchet. It fails
//! on any use of a clock, sockets, files, threads, OS randomness or hash-ordered collections
//! in core/src, and on an I/O crate in core's dependencies.

use std::path::Path;

const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "a clock: take `now: Time` as an argument"),
    ("SystemTime", "a clock: take `now: Time` as an argument"),
    ("std::net", "sockets belong to dkv-net"),
    ("std::fs", "files belong to the drivers"),
    ("std::io", "I/O belongs to the drivers"),
    ("std::thread", "the core is single-threaded"),
    ("std::sync::Mutex", "the core is single-threaded"),
    ("thread_rng", "OS randomness: draw from the seeded rng"),
    ("rand::rng(", "OS randomness: draw from the seeded rng"),
    ("OsRng", "OS randomness: draw from the seeded rng"),
    ("from_os_rng", "OS randomness: draw from the seeded rng"),
    ("getrandom", "OS randomness: draw from the seeded rng"),
    ("HashMap", "hash order can leak into outputs: use BTreeMap"),
    ("HashSet", "hash order can leak into outputs: use BTreeSet"),
    ("std::env", "configuration comes in through Config"),
    ("std::process", "the core never spawns or exits"),
    ("std::os", "OS specifics belong to the drivers"),
    ("libc::", "OS calls belong to the drivers"),
    ("static mut", "global state makes runs depend on each other"),
];

const FORBIDDEN_DEPENDENCIES: &[&str] =
    &["mio", "tokio", "socket2", "libc", "nix", "getrandom", "rand", "tempfile", "signal-hook"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Grouped imports spelled out, so `use std::{fs, net::TcpStream}` reads as `std::fs` and
/// `std::net::TcpStream` (nested groups included).
fn expand_groups(code: &str) -> String {
    let Some(open) = code.find("::{") else { return code.to_string() };
    let prefix_start =
        code[..open].rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
    let prefix = &code[prefix_start..open];
    let mut depth = 0;
    let mut close = code.len();
    for (i, c) in code[open + 2..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = open + 2 + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &code[(open + 3).min(close)..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let expanded: Vec<String> =
        parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).map(|p| format!("{prefix}::{p}")).collect();
    let rest = code.get(close + 1..).unwrap_or("");
    expand_groups(&format!("{}{}; {}", &code[..prefix_start], expanded.join("; "), rest))
}

/// The forbidden uses in one source file, as "line: pattern: why".
fn violations_in(text: &str) -> Vec<String> {
    // Comments out, then lines joined, so that a use spread over several lines is seen whole.
    let code: Vec<&str> = text.lines().map(|line| line.split("//").next().unwrap_or("")).collect();
    let whole = expand_groups(&code.join("\n")).split_whitespace().collect::<Vec<_>>().join(" ");
    let mut violations = Vec::new();
    for (pattern, why) in FORBIDDEN {
        if whole.contains(pattern) {
            let line = code.iter().position(|l| l.contains(pattern)).map_or("?".to_string(), |n| (n + 1).to_string());
            violations.push(format!("{line}: `{pattern}`: {why}"));
        }
    }
    violations
}

/// The core source uses no clock, socket, file, thread, OS randomness or hash-ordered map.
#[test]
fn core_is_sans_io_and_deterministic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "found the core's sources");
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source is readable");
        violations.extend(violations_in(&text).into_iter().map(|v| format!("{}:{v}", file.display())));
    }
    assert!(violations.is_empty(), "core must stay sans-IO and deterministic:\n{}", violations.join("\n"));
}

/// The rules see through grouped and multi-line imports, and ignore comments.
#[test]
fn tidy_sees_grouped_imports() {
    assert!(!violations_in("use std::{fs, net::TcpStream};").is_empty());
    assert!(!violations_in("use std::{\n    collections::BTreeMap,\n    thread,\n};").is_empty());
    assert!(!violations_in("use std::{sync::{Arc, Mutex}};").is_empty());
    assert!(!violations_in("use std::collections::{BTreeMap, HashMap};").is_empty());
    assert!(violations_in("use std::{collections::BTreeMap, sync::Arc}; // std::fs").is_empty());
}

/// core/Cargo.toml depends on no I/O or OS-randomness crate.
#[test]
fn core_depends_on_no_io_crate() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
    for line in deps.lines() {
        let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
        assert!(!FORBIDDEN_DEPENDENCIES.contains(&name), "core must not depend on the I/O crate `{name}`");
    }
}
