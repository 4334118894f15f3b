//! The `run` resource: one `process-desired`, holding the layers lock from
//! its plan to its drop, installing the layers the plan left one bounded
//! step at a time.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bindings::exports::kist::content::layers::{
    GuestRun, LayerAction, LayerDesc, LayerError, LayerResult, LentDir, Options, Progress,
};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::layers::install::{Install, Step};
use crate::layers::plan::{self, Plan, remove_layer};
use crate::layers::records::{self, Desc, State};
use crate::retention::holds::Stamp;
use crate::shared::error::{self, Error, Result};
use crate::shared::scope::Caller;

/// The lock a run holds (a `try-lock` name: held for minutes, not a short
/// critical section).
const LOCK: &str = "layers/run";
/// How long a cached layer stays, unless the caller says: 30 days.
const DEFAULT_TTL: u64 = 30 * 24 * 3600;
/// Most a layer may unpack to, unless the caller says: 64 GiB.
const DEFAULT_MAX_UNPACKED: u64 = 64 << 30;

/// A run in progress.
pub struct Run(RefCell<Inner>);

struct Inner {
    _guard: Guard,
    lent: Vec<LentDir>,
    max_unpacked: u64,
    desired: Vec<LayerDesc>,
    outcomes: Vec<Option<Result<LayerAction, LayerError>>>,
    others: Vec<(String, LayerAction)>,
    /// Desired layers still to install, by index.
    pending: VecDeque<usize>,
    current: Option<(usize, Install)>,
    done: bool,
}

/// Who the manager's own store operations run as: confined to its holder,
/// so it sees and removes only the snapshots and blobs it holds.
fn manager() -> Caller {
    Caller::internal(records::HOLDER)
}

/// Takes the layers lock, waiting up to `wait_ms`.
fn lock(wait_ms: u32) -> Result<Guard> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    loop {
        match locks::try_lock(LOCK) {
            Ok(guard) => return Ok(guard),
            Err(locks::LockError::Busy) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(error::lock(LOCK, e)),
        }
    }
}

impl Run {
    /// Locks, plans, and leaves the installs for `step`.
    pub fn start(desired: Vec<LayerDesc>, options: Options, lent: Vec<LentDir>) -> Result<Self> {
        let guard = lock(options.wait_ms)?;
        let ttl = options.cache_ttl_seconds.unwrap_or(DEFAULT_TTL);
        let Plan { outcomes, others } = manager().acting(|| plan::plan(&desired, ttl))?;
        let pending = (0..desired.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        Ok(Self(RefCell::new(Inner {
            _guard: guard,
            lent,
            max_unpacked: options.max_unpacked.unwrap_or(DEFAULT_MAX_UNPACKED),
            desired,
            outcomes,
            others,
            pending,
            current: None,
            done: false,
        })))
    }
}

/// Removes the cached layer cached longest ago, noting it in `others`;
/// `false` if none is left.
/// A cached layer that snapshots made on top of keep is passed over.
fn evict_one(others: &mut Vec<(String, LayerAction)>) -> Result<bool> {
    let mut layers = (*records::current()?).clone();
    let mut cached: Vec<(String, Stamp)> = layers
        .items
        .iter()
        .filter(|(_, r)| r.state == State::Cached)
        .map(|(d, r)| (d.clone(), r.since))
        .collect();
    cached.sort_by_key(|(_, since)| *since);
    for (digest, _) in cached {
        if remove_layer(&mut layers, &digest)? {
            others.push((digest, LayerAction::Removed));
            return Ok(true);
        }
    }
    Ok(false)
}

impl GuestRun for Run {
    fn step(&self) -> Result<Option<Progress>, Error> {
        let mut inner = self.0.borrow_mut();
        let inner = &mut *inner;
        if inner.done {
            return Ok(None);
        }
        let (index, mut install) = match inner.current.take() {
            Some(current) => current,
            None => match inner.pending.pop_front() {
                Some(i) => (i, Install::new(Desc::from(&inner.desired[i]))),
                None => {
                    inner.done = true;
                    return Ok(None);
                }
            },
        };
        let others = &mut inner.others;
        let stepped = manager()
            .acting(|| install.step(&inner.lent, inner.max_unpacked, &mut || evict_one(others)));
        match stepped {
            Ok(Step::Going(progress)) => {
                inner.current = Some((index, install));
                Ok(Some(progress))
            }
            Ok(Step::Done) => {
                inner.outcomes[index] = Some(Ok(LayerAction::Installed));
                Ok(Some(Progress {
                    digest: install.desc.digest.clone(),
                    phase: "installed".into(),
                    done: 0,
                    total: None,
                }))
            }
            Err(e) => {
                let progress = Progress {
                    digest: install.desc.digest.clone(),
                    phase: "failed".into(),
                    done: 0,
                    total: None,
                };
                inner.outcomes[index] = Some(Err(e));
                Ok(Some(progress))
            }
        }
    }

    fn results(&self) -> Vec<LayerResult> {
        let inner = self.0.borrow();
        if !inner.done {
            return Vec::new();
        }
        let desired = inner
            .desired
            .iter()
            .zip(&inner.outcomes)
            .map(|(d, o)| LayerResult {
                digest: d.digest.clone(),
                outcome: o
                    .clone()
                    .expect("every desired layer has its outcome when done"),
            });
        let others = inner.others.iter().map(|(d, a)| LayerResult {
            digest: d.clone(),
            outcome: Ok(*a),
        });
        desired.chain(others).collect()
    }
}
