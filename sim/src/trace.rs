//! The run's event trace: always hashed (a word-wise FNV-style hash over a compact encoding of every event, so two
//! runs of one seed can be compared by one number), and kept as readable lines on request.

/// Where readable trace lines go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// Only the hash.
    #[default]
    Off,
    /// Keep the lines in the report.
    Keep,
    /// Print each line to stderr as it happens (survives a panic mid-run).
    Print,
}

pub struct Trace {
    hash: u64,
    mode: TraceMode,
    lines: Vec<String>,
}

impl Trace {
    pub fn new(mode: TraceMode) -> Trace {
        Trace { hash: 0xcbf2_9ce4_8422_2325, mode, lines: Vec::new() }
    }

    /// Records one event: `words` feed the hash; `describe` is only called when lines are kept.
    pub fn event(&mut self, now: u64, words: &[u64], describe: impl FnOnce() -> String) {
        self.mix(now);
        for &w in words {
            self.mix(w);
        }
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Keep => self.lines.push(format!("{:>12.6}s  {}", now as f64 / 1e9, describe())),
            TraceMode::Print => eprintln!("{:>12.6}s  {}", now as f64 / 1e9, describe()),
        }
    }

    /// FNV-style, a word at a time, with a final avalanche per word so that nearby values
    /// spread over all bits.
    fn mix(&mut self, word: u64) {
        let mut x = self.hash ^ word;
        x = x.wrapping_mul(0x0100_0000_01b3);
        x ^= x >> 29;
        self.hash = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}
