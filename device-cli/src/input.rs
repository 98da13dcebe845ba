//! Secrets and data from the environment or standard input.

use anyhow::{Context, Result};
use feltbog_core::crypto::Passphrase;
use std::io::BufRead;

/// Reads passphrases (environment first, then one stdin line each) and then data lines.
pub struct Input {
    lines: std::io::Lines<std::io::StdinLock<'static>>,
    last: Option<Passphrase>,
}

impl Input {
    pub fn stdin() -> Input {
        Input {
            lines: std::io::stdin().lock().lines(),
            last: None,
        }
    }

    /// The passphrase from environment variable `var`, or else the next line of stdin.
    pub fn passphrase(&mut self, var: &str) -> Result<Passphrase> {
        let raw = match std::env::var(var) {
            Ok(v) => v,
            Err(_) => self.lines.next().transpose()?.with_context(|| {
                format!("no passphrase: set {var} or write it as a line on stdin")
            })?,
        };
        let p = Passphrase::new(raw)?;
        self.last = Some(p.clone());
        Ok(p)
    }

    /// The passphrase read last (for commands that need it twice).
    pub fn last_passphrase(&self) -> Option<Passphrase> {
        self.last.clone()
    }

    /// The next data line, or `None` at end of input.
    pub fn next_line(&mut self) -> Result<Option<String>> {
        Ok(self.lines.next().transpose()?)
    }
}
