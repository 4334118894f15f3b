//! The results table: one section per scenario, one row per contender,
//! with median/min/max and the ratio to the scenario's baseline.

use std::fmt::Write;
use std::time::Duration;

use crate::measure::Samples;

/// How a row's work is expressed as a rate.
#[derive(Clone, Copy)]
pub enum Unit {
    /// Bytes moved per run: shown as MiB/s.
    Bytes(u64),
    /// Operations per run: shown as ops/s.
    Ops(u64),
    /// Just the time.
    Time,
}

#[derive(Default)]
pub struct Report {
    text: String,
}

impl Report {
    /// A section of rows; ratios are against `samples[0]` (the baseline)
    /// as speed (>1 is faster than the baseline).
    pub fn section(&mut self, title: &str, unit: Unit, samples: &[Samples]) {
        let _ = writeln!(self.text, "\n### {title}\n");
        let rate = match unit {
            Unit::Bytes(_) => "MiB/s (median)",
            Unit::Ops(_) => "ops/s (median)",
            Unit::Time => "",
        };
        let _ = writeln!(
            self.text,
            "| contender | median | min | max | {rate} | speed vs {} |",
            samples[0].name
        );
        let _ = writeln!(self.text, "|---|---|---|---|---|---|");
        let base = samples[0].median().as_secs_f64();
        for s in samples {
            let m = s.median().as_secs_f64();
            let rate = match unit {
                Unit::Bytes(b) => format!("{:.0}", b as f64 / (1 << 20) as f64 / m),
                Unit::Ops(n) => format!("{:.0}", n as f64 / m),
                Unit::Time => String::new(),
            };
            let _ = writeln!(
                self.text,
                "| {} | {} | {} | {} | {rate} | {:.2}× |",
                s.name,
                fmt(s.median()),
                fmt(s.min()),
                fmt(s.max()),
                base / m
            );
        }
    }

    /// A free-form note under the current section.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.text, "\n{text}");
    }

    /// A line appended as is (a table row under a note).
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.text, "{text}");
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.2} ms", s * 1000.0)
    }
}
