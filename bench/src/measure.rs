//! Running contenders interleaved and summarising their timings.

use std::time::Duration;

/// One way of doing a scenario's work. `run(i)` does repetition `i` and
/// returns the time it took (setup excluded).
pub struct Contender<'a> {
    pub name: String,
    pub run: Box<dyn FnMut(usize) -> anyhow::Result<Duration> + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(
        name: impl Into<String>,
        run: impl FnMut(usize) -> anyhow::Result<Duration> + 'a,
    ) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// The timings of one contender.
pub struct Samples {
    pub name: String,
    pub times: Vec<Duration>,
}

impl Samples {
    pub fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }
    pub fn min(&self) -> Duration {
        *self.times.iter().min().expect("samples")
    }
    pub fn max(&self) -> Duration {
        *self.times.iter().max().expect("samples")
    }
}

/// Runs every contender `reps` times, round-robin (one repetition of each
/// in turn), so drift in the machine's speed hits all of them alike.
pub fn interleave(reps: usize, mut contenders: Vec<Contender<'_>>) -> anyhow::Result<Vec<Samples>> {
    let mut samples: Vec<Samples> = contenders
        .iter()
        .map(|c| Samples {
            name: c.name.clone(),
            times: Vec::new(),
        })
        .collect();
    for rep in 0..reps {
        for (c, s) in contenders.iter_mut().zip(&mut samples) {
            let t =
                (c.run)(rep).map_err(|e| e.context(format!("{} (repetition {rep})", c.name)))?;
            s.times.push(t);
        }
    }
    Ok(samples)
}

/// Times `f`.
pub fn time(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed())
}
