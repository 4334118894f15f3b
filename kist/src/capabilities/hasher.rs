//! `kist:content/hasher`: sha256 and sha512 with the `sha2` crate, which
//! picks SHA-NI (or other CPU extensions) at run time.
//!
//! Large inputs are hashed on a worker thread: `update` hands the chunk
//! over and returns, so the guest writes chunk N+1 while chunk N is being
//! hashed on another core. Small inputs (most blobs) are hashed inline,
//! where a thread would cost more than it saves.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256, Sha512};
use wasmtime::component::Resource;

use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;

use super::CapabilitiesView;
use super::slots::{Counter, Slot};
use crate::bindings::kist::content::hasher::{Algorithm, Host, HostHasher};

/// An `update` at least this large moves hashing to a worker thread.
const BACKGROUND_FROM: usize = 256 << 10;
/// Chunks queued for the worker before `update` waits (bounds memory).
const QUEUE: usize = 2;
/// Bytes read from a file at a time by `update-from-file`.
const FILE_CHUNK: usize = 1 << 20;

/// A running hash, held in the resource table for the guest.
pub struct HashState {
    state: State,
    /// The hasher's place among the store's live hashers.
    _slot: Slot,
}

enum State {
    Inline(Box<Hash>),
    Background(Worker),
}

/// The hash computation itself.
#[derive(Clone)]
enum Hash {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hash {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn sum(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.clone().finalize().to_vec(),
            Self::Sha512(h) => h.clone().finalize().to_vec(),
        }
    }

    fn export(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.serialize().to_vec(),
            Self::Sha512(h) => h.serialize().to_vec(),
        }
    }

    fn restore(algorithm: Algorithm, state: &[u8]) -> Option<Self> {
        fn de<H: SerializableState>(state: &[u8]) -> Option<H> {
            H::deserialize(state.try_into().ok()?).ok()
        }
        Some(match algorithm {
            Algorithm::Sha256 => Self::Sha256(de(state)?),
            Algorithm::Sha512 => Self::Sha512(de(state)?),
        })
    }
}

/// Work for the hashing thread: data to hash, a range of a file to read
/// and hash, or a question about the hash so far (answered after
/// everything queued before it).
enum Job {
    Data(Vec<u8>),
    File(Arc<std::fs::File>, u64, u64),
    Ask(fn(&Hash) -> Vec<u8>, Sender<Vec<u8>>),
}

/// Feeds `len` bytes of `file` at `offset` to `hash`, read through `buf`
/// (grown once to at most [`FILE_CHUNK`], then reused).
fn hash_file(
    hash: &mut Hash,
    buf: &mut Vec<u8>,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let want = usize::try_from(len)
        .unwrap_or(FILE_CHUNK)
        .clamp(1, FILE_CHUNK);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let (mut at, end) = (offset, offset.saturating_add(len));
    while at < end {
        let n = buf.len().min((end - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        hash.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// A hash owned by a worker thread; the thread ends when this is dropped,
/// or when it cannot read a file it was given (the hash is lost then, and
/// the next call on it fails).
struct Worker(SyncSender<Job>);

/// A worker that ended early: its hasher traps the guest, whose ingest
/// resumes from its last saved state.
fn gone() -> wasmtime::Error {
    wasmtime::Error::msg("the hashing thread stopped (a file it was to hash could not be read)")
}

impl Worker {
    fn start(mut hash: Hash, slot: Slot) -> Self {
        let (tx, rx): (SyncSender<Job>, Receiver<Job>) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("kist-hash".into())
            .spawn(move || {
                // The thread's place is given back when it ends.
                let _slot = slot;
                let mut buf = Vec::new();
                for job in rx {
                    match job {
                        Job::Data(data) => hash.update(&data),
                        Job::File(file, offset, len) => {
                            if hash_file(&mut hash, &mut buf, &file, offset, len).is_err() {
                                return;
                            }
                        }
                        Job::Ask(question, reply) => {
                            let _ = reply.send(question(&hash));
                        }
                    }
                }
            })
            .expect("spawning a hashing thread");
        Self(tx)
    }

    fn send(&self, job: Job) -> wasmtime::Result<()> {
        self.0.send(job).map_err(|_| gone())
    }

    fn ask(&self, question: fn(&Hash) -> Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        let (reply, answer) = mpsc::channel();
        self.send(Job::Ask(question, reply))?;
        answer.recv().map_err(|_| gone())
    }
}

impl HashState {
    /// Queues `job` (of `len` bytes): small work is done inline by `inline`;
    /// a large job moves the hash to a worker thread if `threads` has a
    /// place left.
    fn feed(
        &mut self,
        len: u64,
        job: Job,
        threads: &Arc<Counter>,
        inline: impl FnOnce(&mut Hash, Job) -> Result<(), String>,
    ) -> wasmtime::Result<Result<(), String>> {
        match &mut self.state {
            State::Inline(hash) if len < BACKGROUND_FROM as u64 => Ok(inline(hash, job)),
            State::Inline(hash) => match threads.take() {
                Some(slot) => {
                    let worker = Worker::start((**hash).clone(), slot);
                    worker.send(job)?;
                    self.state = State::Background(worker);
                    Ok(Ok(()))
                }
                None => Ok(inline(hash, job)),
            },
            State::Background(worker) => worker.send(job).map(Ok),
        }
    }

    fn ask(&self, question: fn(&Hash) -> Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        match &self.state {
            State::Inline(hash) => Ok(question(hash)),
            State::Background(worker) => worker.ask(question),
        }
    }
}

/// Does a job on the calling thread.
fn inline(hash: &mut Hash, job: Job) -> Result<(), String> {
    match job {
        Job::Data(data) => hash.update(&data),
        Job::File(file, offset, len) => {
            hash_file(hash, &mut Vec::new(), &file, offset, len).map_err(|e| e.to_string())?
        }
        Job::Ask(question, reply) => {
            let _ = reply.send(question(hash));
        }
    }
    Ok(())
}

impl Host for CapabilitiesView<'_> {}

impl CapabilitiesView<'_> {
    /// Adds a hasher to the table. A guest over the cap traps: `new` has
    /// no error to return, and only a runaway guest gets there.
    fn push_hasher(&mut self, hash: Hash) -> wasmtime::Result<Resource<HashState>> {
        let Some(slot) = self.ctx.hashers.take() else {
            wasmtime::bail!(
                "the component holds {} hashers, the most a store allows",
                self.ctx.hashers.max()
            );
        };
        Ok(self.table.push(HashState {
            state: State::Inline(Box::new(hash)),
            _slot: slot,
        })?)
    }
}

impl HostHasher for CapabilitiesView<'_> {
    fn new(&mut self, algorithm: Algorithm) -> wasmtime::Result<Resource<HashState>> {
        self.push_hasher(Hash::new(algorithm))
    }

    fn restore(
        &mut self,
        algorithm: Algorithm,
        state: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<HashState>>> {
        Hash::restore(algorithm, &state)
            .map(|h| self.push_hasher(h))
            .transpose()
    }

    fn update(&mut self, this: Resource<HashState>, data: Vec<u8>) -> wasmtime::Result<()> {
        let threads = &self.ctx.hash_threads;
        let len = data.len() as u64;
        // Hashing bytes in memory cannot fail.
        let _ = self
            .table
            .get_mut(&this)?
            .feed(len, Job::Data(data), threads, inline)?;
        Ok(())
    }

    fn update_from_file(
        &mut self,
        this: Resource<HashState>,
        file: Resource<Descriptor>,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        let file = match self.table.get(&file)? {
            Descriptor::File(f) if f.open_mode.contains(OpenMode::READ) => Arc::clone(&f.file),
            _ => return Ok(Err("not a regular file open for reading".into())),
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Ok(Err(format!(
                "{length} bytes at {offset} are past the end of the file ({size} bytes)"
            )));
        }
        let threads = &self.ctx.hash_threads;
        self.table
            .get_mut(&this)?
            .feed(length, Job::File(file, offset, length), threads, inline)
    }

    fn sum(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        self.table.get(&this)?.ask(Hash::sum)
    }

    fn export_state(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        self.table.get(&this)?.ask(Hash::export)
    }

    fn drop(&mut self, this: Resource<HashState>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
