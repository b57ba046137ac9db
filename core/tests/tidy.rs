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
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (pattern, why) in FORBIDDEN {
                if code.contains(pattern) {
                    violations.push(format!("{}:{}: `{pattern}`: {why}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "core must stay sans-IO and deterministic:\n{}", violations.join("\n"));
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
