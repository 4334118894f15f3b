//! `kist:content/deflate`: gzip with the `kist-gzip` crate (the same code
//! kist's portable capabilities compile to wasm, so both make the same
//! bytes), on a worker thread: `write` hands the bytes over and returns
//! what is compressed by then, so the guest builds the next part of its
//! tar stream while the last one is being compressed.

use std::sync::mpsc::{self, Receiver, SyncSender};

use wasmtime::component::Resource;

use super::CapabilitiesView;
use super::slots::Slot;
use crate::bindings::kist::content::deflate::{Host, HostGzipEncoder};

/// Writes queued for the worker before `write` waits (bounds memory).
const QUEUE: usize = 2;

/// A gzip member being compressed, held in the resource table.
pub struct Compressor(State);

enum State {
    /// No thread was free: compressed in the calling thread.
    Inline(Box<kist_gzip::Encoder>),
    Worker(Worker),
}

/// The worker's ends: input (`None` ends the member) and output.
struct Worker {
    input: SyncSender<Option<Vec<u8>>>,
    output: Receiver<Vec<u8>>,
}

impl Worker {
    fn start(mut encoder: kist_gzip::Encoder, slot: Slot) -> Self {
        let (input, jobs) = mpsc::sync_channel::<Option<Vec<u8>>>(QUEUE);
        let (done, output) = mpsc::channel();
        std::thread::Builder::new()
            .name("kist-gzip".into())
            .spawn(move || {
                let _slot = slot;
                for job in jobs {
                    let Some(data) = job else {
                        let _ = done.send(encoder.finish());
                        return;
                    };
                    if done.send(encoder.write(&data)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning a compressing thread");
        Self { input, output }
    }

    /// What the worker has compressed so far.
    fn ready(&self) -> Vec<u8> {
        self.output.try_iter().collect::<Vec<_>>().concat()
    }
}

impl Host for CapabilitiesView<'_> {}

impl HostGzipEncoder for CapabilitiesView<'_> {
    fn new(&mut self, level: u8) -> wasmtime::Result<Resource<Compressor>> {
        let encoder = kist_gzip::Encoder::new(level);
        let state = match self.ctx.compressors.take() {
            Some(slot) => State::Worker(Worker::start(encoder, slot)),
            None => State::Inline(Box::new(encoder)),
        };
        Ok(self.table.push(Compressor(state))?)
    }

    fn write(&mut self, this: Resource<Compressor>, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(match &mut self.table.get_mut(&this)?.0 {
            State::Inline(encoder) => encoder.write(&data),
            State::Worker(worker) => {
                worker
                    .input
                    .send(Some(data))
                    .map_err(|_| wasmtime::Error::msg("the compressing thread ended"))?;
                worker.ready()
            }
        })
    }

    fn finish(&mut self, this: Resource<Compressor>) -> wasmtime::Result<Vec<u8>> {
        Ok(match self.table.delete(this)?.0 {
            State::Inline(encoder) => encoder.finish(),
            State::Worker(worker) => {
                worker
                    .input
                    .send(None)
                    .map_err(|_| wasmtime::Error::msg("the compressing thread ended"))?;
                // Everything sent before `None`, then the end.
                worker.output.iter().collect::<Vec<_>>().concat()
            }
        })
    }

    fn drop(&mut self, this: Resource<Compressor>) -> wasmtime::Result<()> {
        // Dropping the worker's input ends its thread.
        self.table.delete(this)?;
        Ok(())
    }
}
