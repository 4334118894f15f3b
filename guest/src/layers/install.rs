//! Installing one layer, a step at a time: download into the resumable
//! ingest `layers/<digest>` (from its offset; a source that ignores the
//! range restarts it from 0), commit it only if size and digest match,
//! unpack it into `layers/<digest>/extract`, commit that as
//! `layers/<digest>`, charge the tree to the `layers` holder, record it,
//! and release the blob (the tree is the layer now).

use std::time::{Duration, Instant};

use crate::Component;
use crate::bindings::exports::kist::content::ingester::{
    Guest as _, GuestWriter, Writer, WriterOptions,
};
use crate::bindings::exports::kist::content::layers::{LayerError, LentDir, Progress};
use crate::bindings::exports::kist::content::snapshots::{Guest as _, SnapshotOptions};
use crate::bindings::exports::kist::content::store::Guest as _;
use crate::bindings::exports::kist::content::types::Label;
use crate::content::ingester::IngestWriter;
use crate::layers::plan::DIFF_ID_LABEL;
use crate::layers::records::{self, Desc, HOLDER, Record, State};
use crate::layers::source::Source;
use crate::retention::holds;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::snapshots::apply;

/// Bytes asked of a source per read.
const CHUNK: u32 = 1 << 20;
/// How long one step downloads before it reports progress.
const STEP_TIME: Duration = Duration::from_secs(2);

/// Where an install is.
enum Phase {
    /// Nothing opened yet.
    Open,
    /// Downloading from `urls[url]`.
    Download {
        writer: Writer,
        url: usize,
        source: Option<Source>,
        failures: Vec<String>,
    },
    /// The blob is stored and held: unpack it.
    Unpack,
}

/// One layer being installed.
pub struct Install {
    pub desc: Desc,
    phase: Phase,
}

/// What a step did.
pub enum Step {
    /// More to do; this is where it is.
    Going(Progress),
    /// Installed.
    Done,
}

type Outcome<T> = std::result::Result<T, LayerError>;

fn store(e: Error) -> LayerError {
    LayerError::Store(e)
}

impl Install {
    pub fn new(desc: Desc) -> Self {
        Self {
            desc,
            phase: Phase::Open,
        }
    }

    fn progress(&self, phase: &str, done: u64, total: Option<u64>) -> Progress {
        Progress {
            digest: self.desc.digest.clone(),
            phase: phase.to_owned(),
            done,
            total,
        }
    }

    /// Does the next bounded piece of the install. `room` makes space
    /// (evicting cached layers) when the store says `no-space`.
    pub fn step(
        &mut self,
        lent: &[LentDir],
        max_unpacked: u64,
        room: &mut dyn FnMut() -> Result<bool>,
    ) -> Outcome<Step> {
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Open => {
                self.phase = match with_room(room, || self.open_writer()).map_err(store)? {
                    Some(writer) => Phase::Download {
                        writer,
                        url: 0,
                        source: None,
                        failures: Vec::new(),
                    },
                    None => Phase::Unpack,
                };
                Ok(Step::Going(self.progress(
                    "downloading",
                    0,
                    Some(self.desc.size),
                )))
            }
            Phase::Download {
                writer,
                url,
                source,
                failures,
            } => self.download(writer, url, source, failures, lent),
            Phase::Unpack => {
                self.unpack(max_unpacked, room)?;
                Ok(Step::Done)
            }
        }
    }

    /// The ingest's writer, or `None` if the blob is stored already (it
    /// is held for `layers` now: nothing to download).
    fn open_writer(&self) -> Result<Option<Writer>> {
        let options = WriterOptions {
            expected_size: Some(self.desc.size),
            expected: Some(self.desc.digest.clone()),
            labels: Vec::new(),
            holder: Some(HOLDER.to_owned()),
        };
        match Component::open_writer(records::ingest_ref(&self.desc.digest), options) {
            Ok(w) => Ok(Some(w)),
            Err(Error::AlreadyExists) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn download(
        &mut self,
        writer: Writer,
        mut url: usize,
        mut source: Option<Source>,
        mut failures: Vec<String>,
        lent: &[LentDir],
    ) -> Outcome<Step> {
        let size = self.desc.size;
        let w: &IngestWriter = writer.get();
        let mut offset = w.status().map_err(store)?.offset;
        let started = Instant::now();
        loop {
            let Some(src) = source.as_mut() else {
                if offset == size {
                    // All there (a run killed after the last byte): the
                    // commit verifies it.
                    return self.commit(writer);
                }
                let Some(from) = self.desc.urls.get(url) else {
                    // Every source failed: what came stays for a resume;
                    // an empty ingest is not worth keeping.
                    drop(writer);
                    if offset == 0 {
                        let _ = Component::abort(records::ingest_ref(&self.desc.digest));
                    }
                    return Err(LayerError::Download(failures.join("; ")));
                };
                match Source::open(from, offset, lent) {
                    Ok(s) => {
                        if s.start() != offset {
                            // The source sends everything: start again.
                            w.truncate(0).map_err(store)?;
                            offset = 0;
                        }
                        source = Some(s);
                    }
                    Err(why) => {
                        failures.push(why);
                        url += 1;
                    }
                }
                continue;
            };
            let from = &self.desc.urls[url];
            let want = if offset < size { CHUNK } else { 1 };
            let data = match src.read(from, want) {
                Ok(d) => d,
                Err(why) => {
                    failures.push(why);
                    source = None;
                    url += 1;
                    continue;
                }
            };
            if offset + data.len() as u64 > size {
                drop(writer); // its lock, so the ingest can go
                return Err(self.discard(format!(
                    "{from} sent more than the {size} bytes the layer has"
                )));
            }
            if data.is_empty() {
                if offset < size {
                    failures.push(format!("{from}: the data ended at byte {offset} of {size}"));
                    source = None;
                    url += 1;
                    continue;
                }
                return self.commit(writer);
            }
            let n = data.len() as u64;
            w.write(data).map_err(store)?;
            offset += n;
            if started.elapsed() >= STEP_TIME {
                let progress = self.progress("downloading", offset, Some(size));
                self.phase = Phase::Download {
                    writer,
                    url,
                    source,
                    failures,
                };
                return Ok(Step::Going(progress));
            }
        }
    }

    /// Commits the download: size and digest checked by the ingest.
    fn commit(&mut self, writer: Writer) -> Outcome<Step> {
        let d = &self.desc;
        match IngestWriter::commit(writer, Some(d.size), Some(d.digest.clone()), Vec::new()) {
            Ok(_) | Err(Error::AlreadyExists) => {
                self.phase = Phase::Unpack;
                Ok(Step::Going(self.progress("unpacking", 0, None)))
            }
            Err(Error::FailedPrecondition(why)) => Err(self.discard(why)),
            Err(e) => Err(store(e)),
        }
    }

    /// Wrong bytes are dropped, so the next attempt starts clean.
    fn discard(&self, why: String) -> LayerError {
        let _ = Component::abort(records::ingest_ref(&self.desc.digest));
        LayerError::Integrity(why)
    }

    /// Unpacks the stored blob and records the layer. On failure the
    /// snapshot is removed and the blob released: nothing is installed.
    fn unpack(&self, max_unpacked: u64, room: &mut dyn FnMut() -> Result<bool>) -> Outcome<()> {
        let digest = &self.desc.digest;
        let key = records::extract_key(digest);
        let name = records::snapshot_name(digest);
        let options = |labels| SnapshotOptions {
            labels,
            holder: Some(HOLDER.to_owned()),
        };
        let installed = (|| {
            let blob = Digest::parse(digest)?;
            Component::prepare(key.clone(), None, options(Vec::new()))?;
            // Charged as it unpacks: past the quotas it stops, and a cached
            // layer evicted makes room for another try.
            let unpacked = with_room(room, || apply::apply(&key, &blob, "", max_unpacked));
            let diff_id = match unpacked {
                Ok(d) => d.to_string(),
                Err(e) => {
                    let _ = Component::remove(key.clone());
                    return Err(e);
                }
            };
            let usage = Component::usage(key.clone())?.size;
            let label = Label {
                key: DIFF_ID_LABEL.to_owned(),
                value: diff_id.clone(),
            };
            Component::commit(name.clone(), key.clone(), options(vec![label]))?;
            let mut layers = (*records::current()?).clone();
            layers.items.insert(
                digest.clone(),
                Record {
                    desc: self.desc.clone(),
                    state: State::Installed,
                    since: holds::now(),
                    expires: None,
                    diff_id,
                    usage,
                },
            );
            records::save(&layers)
        })();
        // Installed or not, the blob is not kept by `layers`: the tree is
        // the layer (a later install of it finds the blob cached, if the
        // store still has it, and downloads nothing).
        let _ = Component::delete(digest.clone(), Some(HOLDER.to_owned()));
        installed.map_err(store)
    }
}

/// Runs `f`; while it fails with `no-space`, lets `room` evict a cached
/// layer and tries again, until nothing is left to evict.
fn with_room<T>(
    room: &mut dyn FnMut() -> Result<bool>,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    loop {
        match f() {
            Err(Error::NoSpace(why)) => {
                if !room()? {
                    return Err(Error::NoSpace(why));
                }
            }
            other => return other,
        }
    }
}
