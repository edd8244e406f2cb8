//! The progress line on stderr: redrawn in place on a terminal; on anything else (CI
//! logs) one line when a phase starts and one when it ends, nothing in between.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// One phase's progress line.
pub(crate) struct Progress {
    label: String,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

/// Redraws at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const WIDTH: usize = 24;

impl Progress {
    /// Starts a phase called `label`.
    pub fn start(label: impl Into<String>) -> Self {
        let label = label.into();
        let tty = std::io::stderr().is_terminal();
        if !tty {
            eprintln!("{label}…");
        }
        Self {
            label,
            tty,
            started: Instant::now(),
            last_draw: None,
        }
    }

    /// Shows `done` of `total` and a free text (rates, counts).
    pub fn update(&mut self, done: u64, total: u64, detail: &str) {
        if !self.tty || self.last_draw.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(Instant::now());
        eprint!(
            "\r\x1b[2K{} [{}] {done}/{total} {detail} {:.0}s",
            self.label,
            bar(done, total),
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }

    /// Ends the phase with a summary line.
    pub fn finish(self, summary: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "{}: {summary} ({:.1} s)",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A bar of `WIDTH` cells, `#` for done.
fn bar(done: u64, total: u64) -> String {
    let filled = if total == 0 {
        WIDTH
    } else {
        ((done.min(total) as f64 / total as f64) * WIDTH as f64) as usize
    };
    format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 10), ".".repeat(WIDTH));
        assert_eq!(bar(5, 10), format!("{}{}", "#".repeat(12), ".".repeat(12)));
        assert_eq!(bar(20, 10), "#".repeat(WIDTH));
        assert_eq!(bar(0, 0), "#".repeat(WIDTH));
    }
}
