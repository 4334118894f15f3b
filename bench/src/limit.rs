//! The physical limit of storing a file on this machine, measured in the
//! same run as the contenders (issue 18's definition): the slower of
//! writing the bytes to the disk — the faster of `dd oflag=direct` and
//! `cp` + `sync` — and hashing them with native sha256. Nothing that
//! stores a file with its digest can beat both.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::measure::{Contender, Samples, time};
use crate::native;
use crate::report::Report;
use crate::tools::timed;

const DD: &str = "limit: dd bs=4M oflag=direct";
const CP: &str = "limit: cp + sync (copy_file_range, then flush)";
const SHA: &str = "limit: sha256 of the file (sha2, SHA-NI, 1 thread)";

/// The three measurements of the limit, writing into `dir`.
pub fn contenders<'a>(src: &'a Path, dir: &'a Path) -> Vec<Contender<'a>> {
    let out = dir.join("limit-copy");
    let out2 = out.clone();
    vec![
        Contender::new(DD, move |_| {
            let result = timed(
                Command::new("dd")
                    .arg(format!("if={}", src.display()))
                    .arg(format!("of={}", out.display()))
                    .args(["bs=4M", "oflag=direct", "status=none"]),
                None,
            );
            let _ = std::fs::remove_file(&out);
            result
        }),
        Contender::new(CP, move |_| {
            let result = timed(
                Command::new("sh")
                    .args(["-c", "cp \"$1\" \"$2\" && sync \"$2\"", "sh"])
                    .arg(src)
                    .arg(&out2),
                None,
            );
            let _ = std::fs::remove_file(&out2);
            result
        }),
        Contender::new(SHA, move |_| time(|| native::sha256_file(src).map(drop))),
    ]
}

/// The limit's median time, from the samples of [`contenders`].
fn limit(samples: &[Samples]) -> Option<Duration> {
    let median = |name: &str| samples.iter().find(|s| s.name == name).map(Samples::median);
    Some(median(DD)?.min(median(CP)?).max(median(SHA)?))
}

/// Adds a table of every row not measuring the limit, against it.
pub fn report(report: &mut Report, samples: &[Samples]) {
    let Some(limit) = limit(samples) else {
        return;
    };
    report.note(&format!(
        "Against the physical limit ({:.2} s: the slower of the faster write and the hash):",
        limit.as_secs_f64()
    ));
    report.line("\n| contender | × the limit's speed |\n|---|---|");
    for s in samples.iter().filter(|s| !s.name.starts_with("limit:")) {
        report.line(&format!(
            "| {} | {:.2}× |",
            s.name,
            limit.as_secs_f64() / s.median().as_secs_f64()
        ));
    }
}
