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

use super::CapabilitiesView;
use super::slots::{Counter, Slot};
use crate::bindings::kist::content::hasher::{Algorithm, Host, HostHasher};

/// An `update` at least this large moves hashing to a worker thread.
const BACKGROUND_FROM: usize = 256 << 10;
/// Chunks queued for the worker before `update` waits (bounds memory).
const QUEUE: usize = 2;

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
pub(crate) enum Hash {
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

    pub(crate) fn update(&mut self, data: &[u8]) {
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

/// Work for the hashing thread: data to hash, or a question about the
/// hash so far (answered after everything queued before it).
enum Job {
    Data(Vec<u8>),
    Ask(fn(&Hash) -> Vec<u8>, Sender<Vec<u8>>),
    Give(Sender<Hash>),
}

/// A hash owned by a worker thread; the thread ends when this is dropped.
struct Worker(SyncSender<Job>);

impl Worker {
    fn start(mut hash: Hash, slot: Slot) -> Self {
        let (tx, rx): (SyncSender<Job>, Receiver<Job>) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("kist-hash".into())
            .spawn(move || {
                // The thread's place is given back when it ends.
                let _slot = slot;
                for job in rx {
                    match job {
                        Job::Data(data) => hash.update(&data),
                        Job::Ask(question, reply) => {
                            let _ = reply.send(question(&hash));
                        }
                        Job::Give(reply) => {
                            let _ = reply.send(hash.clone());
                        }
                    }
                }
            })
            .expect("spawning a hashing thread");
        Self(tx)
    }

    fn ask(&self, question: fn(&Hash) -> Vec<u8>) -> Vec<u8> {
        let (reply, answer) = mpsc::channel();
        self.0
            .send(Job::Ask(question, reply))
            .expect("hashing thread alive");
        answer.recv().expect("hashing thread answers")
    }
}

impl HashState {
    /// Hashes `data`; a large chunk moves the hash to a worker thread if
    /// `threads` has a place left.
    pub(crate) fn update(&mut self, data: Vec<u8>, threads: &Arc<Counter>) {
        match &mut self.state {
            State::Inline(hash) if data.len() < BACKGROUND_FROM => hash.update(&data),
            State::Inline(hash) => match threads.take() {
                Some(slot) => {
                    let worker = Worker::start((**hash).clone(), slot);
                    worker
                        .0
                        .send(Job::Data(data))
                        .expect("hashing thread alive");
                    self.state = State::Background(worker);
                }
                None => hash.update(&data),
            },
            State::Background(worker) => worker
                .0
                .send(Job::Data(data))
                .expect("hashing thread alive"),
        }
    }

    /// The hash so far, for a caller that feeds it itself (`copier`); a
    /// worker thread, if there is one, finishes its queue and ends. Put the
    /// hash back with [`HashState::put`].
    pub(crate) fn take(&mut self) -> Hash {
        match &self.state {
            State::Inline(hash) => (**hash).clone(),
            State::Background(worker) => {
                let (reply, answer) = mpsc::channel();
                worker
                    .0
                    .send(Job::Give(reply))
                    .expect("hashing thread alive");
                answer.recv().expect("hashing thread answers")
            }
        }
    }

    /// Makes `hash` the state (inline: the next large update may start a
    /// worker again).
    pub(crate) fn put(&mut self, hash: Hash) {
        self.state = State::Inline(Box::new(hash));
    }

    fn ask(&self, question: fn(&Hash) -> Vec<u8>) -> Vec<u8> {
        match &self.state {
            State::Inline(hash) => question(hash),
            State::Background(worker) => worker.ask(question),
        }
    }
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
        self.table.get_mut(&this)?.update(data, threads);
        Ok(())
    }

    fn sum(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&this)?.ask(Hash::sum))
    }

    fn export_state(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&this)?.ask(Hash::export))
    }

    fn drop(&mut self, this: Resource<HashState>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
