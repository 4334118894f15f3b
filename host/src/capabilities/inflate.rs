//! `kist:content/inflate`: a store file decompressed (gzip, zstd) and
//! sha256-hashed on a worker thread, a few chunks ahead of the guest, so
//! `snapshots.apply` writes files while the next ones are inflated. The
//! file is opened beneath the store's directory as `trees` opens paths.

use std::io::{BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rustix::fs::OFlags;
use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::CapabilitiesView;
use super::slots::Slot;
use crate::bindings::kist::content::inflate::{Compression, Host, HostInflater, InflateError};
use crate::bindings::kist::content::trees::TreeError;

/// Bytes the worker hands over at a time.
const CHUNK: usize = 1 << 20;
/// Chunks decompressed ahead of the guest (bounds memory per inflater).
const AHEAD: usize = 4;

/// What the worker sends.
enum Message {
    Data(Vec<u8>),
    End(String),
    Failed(InflateError),
}

/// One file being decompressed, held in the resource table.
pub struct Inflater {
    state: State,
    pending: Vec<u8>,
    at: usize,
}

enum State {
    Running(Receiver<Message>),
    Done(String),
    Failed(InflateError),
}

fn from_tree(e: TreeError) -> InflateError {
    match e {
        TreeError::NotFound => InflateError::NotFound,
        TreeError::InvalidPath(m) => InflateError::InvalidPath(m),
        TreeError::Exists => InflateError::Io("exists".into()),
        TreeError::Unsupported(m) | TreeError::Io(m) => InflateError::Io(m),
    }
}

/// Reads until `buf` is full or the input ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The worker: decompresses `input` into `out` until the end, an error,
/// or the guest dropping the inflater.
fn work(input: std::fs::File, compression: Compression, out: SyncSender<Message>, _slot: Slot) {
    let input = BufReader::with_capacity(CHUNK, input);
    let mut decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => match ruzstd::decoding::StreamingDecoder::new(input) {
            Ok(d) => Box::new(d),
            Err(e) => {
                let _ = out.send(Message::Failed(InflateError::Malformed(format!(
                    "zstd: {e}"
                ))));
                return;
            }
        },
    };
    let mut hash = Sha256::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        match fill(&mut decoded, &mut chunk) {
            Ok(0) => {
                let digest = format!("sha256:{}", hex::encode(hash.finalize()));
                let _ = out.send(Message::End(digest));
                return;
            }
            Ok(n) => {
                chunk.truncate(n);
                hash.update(&chunk);
                if out.send(Message::Data(chunk)).is_err() {
                    return; // the guest dropped the inflater
                }
            }
            Err(e) => {
                let malformed = matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData
                        | std::io::ErrorKind::InvalidInput
                        | std::io::ErrorKind::UnexpectedEof
                ) || e.get_ref().is_some();
                let msg = format!("{compression:?}: {e}");
                let failure = if malformed {
                    InflateError::Malformed(msg)
                } else {
                    InflateError::Io(msg)
                };
                let _ = out.send(Message::Failed(failure));
                return;
            }
        }
    }
}

impl Host for CapabilitiesView<'_> {}

impl HostInflater for CapabilitiesView<'_> {
    fn new(
        &mut self,
        path: String,
        compression: Compression,
    ) -> wasmtime::Result<Resource<Inflater>> {
        let state = match self.ctx.trees.open_file(&path, OFlags::RDONLY) {
            Err(e) => State::Failed(from_tree(e)),
            Ok(fd) => match self.ctx.inflaters.take() {
                None => State::Failed(InflateError::Io(format!(
                    "{} inflaters are running, the most a store allows",
                    self.ctx.inflaters.max()
                ))),
                Some(slot) => {
                    let (tx, rx) = sync_channel(AHEAD);
                    let file = std::fs::File::from(fd);
                    std::thread::Builder::new()
                        .name("kist-inflate".into())
                        .spawn(move || work(file, compression, tx, slot))?;
                    State::Running(rx)
                }
            },
        };
        Ok(self.table.push(Inflater {
            state,
            pending: Vec::new(),
            at: 0,
        })?)
    }

    fn read(
        &mut self,
        this: Resource<Inflater>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, InflateError>> {
        let inflater = self.table.get_mut(&this)?;
        if inflater.at == inflater.pending.len() {
            let next = match &inflater.state {
                State::Running(rx) => rx.recv().unwrap_or_else(|_| {
                    Message::Failed(InflateError::Io("the inflating thread stopped".into()))
                }),
                State::Done(_) => return Ok(Ok(Vec::new())),
                State::Failed(e) => return Ok(Err(e.clone())),
            };
            match next {
                Message::Data(data) => {
                    inflater.pending = data;
                    inflater.at = 0;
                }
                Message::End(digest) => {
                    inflater.state = State::Done(digest);
                    return Ok(Ok(Vec::new()));
                }
                Message::Failed(e) => {
                    inflater.state = State::Failed(e.clone());
                    return Ok(Err(e));
                }
            }
        }
        let n = (max.max(1) as usize).min(inflater.pending.len() - inflater.at);
        let out = inflater.pending[inflater.at..inflater.at + n].to_vec();
        inflater.at += n;
        Ok(Ok(out))
    }

    fn digest(&mut self, this: Resource<Inflater>) -> wasmtime::Result<Option<String>> {
        Ok(match &self.table.get(&this)?.state {
            State::Done(d) => Some(d.clone()),
            _ => None,
        })
    }

    fn drop(&mut self, this: Resource<Inflater>) -> wasmtime::Result<()> {
        // Dropping the receiver ends the worker at its next send.
        self.table.delete(this)?;
        Ok(())
    }
}
