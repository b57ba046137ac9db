//! Shared by the dkv programs: log levels in the original project's spelling, logging setup,
//! reading addresses, and the parts of dkv-torture ([`torture`]).

pub mod torture;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The first address `addr` (HOST:PORT) names, or an error that says how to write one.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    resolve_or_say(addr, "give HOST:PORT, e.g. 10.0.0.2:9099")
}

/// As [`resolve`], with the error ending in `what_to_give` (for a flag that wants a particular
/// host or port).
pub fn resolve_or_say(addr: &str, what_to_give: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{addr}': {e}; {what_to_give}"))?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address; {what_to_give}"))
}

/// The original project's log levels: `error`, `info`, `debug`, or `0`, `1`, `2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Info,
    Debug,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<LogLevel, String> {
        match s.to_ascii_lowercase().as_str() {
            "0" | "error" => Ok(LogLevel::Error),
            "1" | "info" => Ok(LogLevel::Info),
            "2" | "debug" => Ok(LogLevel::Debug),
            _ => Err(format!("'{s}' is not a log level; use error, info or debug (or 0, 1, 2)")),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Error => "error",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        })
    }
}

/// Sends logs at `level` and above to stderr.
pub fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    // Colors only for a terminal: log files and test captures get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both of the original project's spellings parse; anything else is a clear error.
    #[test]
    fn log_levels_parse_in_both_spellings() {
        assert_eq!("2".parse(), Ok(LogLevel::Debug));
        assert_eq!("INFO".parse(), Ok(LogLevel::Info));
        assert_eq!("0".parse(), Ok(LogLevel::Error));
        assert!("loud".parse::<LogLevel>().unwrap_err().contains("use error, info or debug"));
    }
}
