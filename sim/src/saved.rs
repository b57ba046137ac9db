//! A saved run: a small text file that replays one run exactly, independently of the swarm's
//! draws (`dkv-sim run … --save FILE`, `dkv-sim shrink … --save FILE`, `dkv-sim replay FILE`).
//!
//! ```text
//! # Why this run is kept (comment lines, kept as they are).
//! seed=45
//! rng_position=24
//! nodes=3 clients=2 ops_per_client=10 keys=3 mix=1,2,0,4,3
//! loss=0.05 crash_every_ns=400000000
//! canary=commit-on-first-yes      # optional: the planted bug the run is played with
//! expect=linearizability          # `pass`, or the checker that must report a violation
//! ```
//!
//! Everything but `canary` and `expect` is a [`Setup`] in its text form.

use crate::Report;
use crate::setup::{Setup, SetupError, words};
use dkv_core::Canary;
use std::fmt;

/// What replaying a saved run must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Every checker passes.
    Pass,
    /// This checker reports a violation (a planted bug's run, kept to show the replay catches it).
    Violation(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SavedRun {
    /// The file's comment lines, `#` included: why the run is kept.
    pub comments: Vec<String>,
    pub setup: Setup,
    pub canary: Option<Canary>,
    pub expect: Expect,
}

impl SavedRun {
    /// A run as it went: its setup, its canary, and what its checkers said.
    pub fn of(report: &Report, canary: Option<Canary>, comments: Vec<String>) -> SavedRun {
        let expect = match report.violations.first() {
            None => Expect::Pass,
            Some(v) => Expect::Violation(v.checker.to_string()),
        };
        SavedRun { comments, setup: report.setup.clone(), canary, expect }
    }

    pub fn parse(text: &str) -> Result<SavedRun, SetupError> {
        let comments = text.lines().filter(|l| l.trim_start().starts_with('#')).map(str::to_string).collect();
        let mut canary = None;
        let mut expect = None;
        let mut rest = Vec::new();
        for (key, value) in words(text)? {
            match key.as_str() {
                "canary" => {
                    canary = Some(Canary::from_name(&value).ok_or_else(|| {
                        let names: Vec<&str> = Canary::ALL.iter().map(|c| c.name()).collect();
                        SetupError(format!("canary={value}: unknown; the canaries are {}", names.join(", ")))
                    })?)
                }
                "expect" => expect = Some(if value == "pass" { Expect::Pass } else { Expect::Violation(value) }),
                _ => rest.push((key, value)),
            }
        }
        let expect = expect.ok_or_else(|| {
            SetupError("a saved run needs `expect=pass` or `expect=CHECKER` (the checker that must fail)".into())
        })?;
        Ok(SavedRun { comments, setup: Setup::from_words(rest)?, canary, expect })
    }

    /// Whether `report`, a replay of this run, shows what the file expects; if not, why not.
    pub fn judge(&self, report: &Report) -> Result<(), String> {
        let found = |checker: &str| report.violations.iter().any(|v| v.checker == checker);
        match &self.expect {
            Expect::Pass if report.passed() => Ok(()),
            Expect::Violation(checker) if found(checker) => Ok(()),
            Expect::Pass => Err(format!(
                "expected every checker to pass, got: {}",
                report.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
            )),
            Expect::Violation(checker) => Err(format!(
                "expected a {checker} violation, got {}",
                if report.passed() {
                    "none: every checker passed".to_string()
                } else {
                    report.violations.iter().map(|v| v.checker).collect::<Vec<_>>().join(", ")
                }
            )),
        }
    }
}

impl fmt::Display for SavedRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for comment in &self.comments {
            writeln!(f, "{comment}")?;
        }
        for word in self.setup.words() {
            writeln!(f, "{word}")?;
        }
        if let Some(canary) = self.canary {
            writeln!(f, "canary={}", canary.name())?;
        }
        match &self.expect {
            Expect::Pass => writeln!(f, "expect=pass"),
            Expect::Violation(checker) => writeln!(f, "expect={checker}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Overrides;

    #[test]
    fn saved_runs_survive_the_text_round_trip() {
        let saved = SavedRun {
            comments: vec!["# why: a test".into(), "#   second line".into()],
            setup: Setup::draw(8836, &Overrides::default()),
            canary: Some(Canary::CommitOnFirstYes),
            expect: Expect::Violation("linearizability".into()),
        };
        assert_eq!(SavedRun::parse(&saved.to_string()), Ok(saved.clone()));
        let pass = SavedRun { canary: None, expect: Expect::Pass, ..saved };
        assert_eq!(SavedRun::parse(&pass.to_string()), Ok(pass.clone()));
        let no_expect = pass.to_string().replace("expect=pass", "");
        assert!(SavedRun::parse(&no_expect).unwrap_err().0.contains("expect=pass"));
    }
}
