//! Splitting a stored layer into its [`Tree`]: one pass over its
//! uncompressed tar, every byte the tar reader takes recorded as raw
//! except a regular file's content, which is hashed instead.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::content::new_blob::from_io;
use crate::deltas::tree::{File, MAX_DECODED, Part, Tree};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid};
use crate::snapshots::inflated::{Inflated, TarSource, layer_error};

/// The tree of the stored layer `blob` (compressed as `media_type` says,
/// empty: detected).
pub fn split(blob: &Digest, media_type: &str) -> Result<Tree> {
    let split = Split::default();
    let mut recorder = split.record(Inflated::open(blob, media_type)?);
    let name = recorder.name();
    {
        let mut archive = tar::Archive::new(&mut recorder);
        for entry in archive.entries().map_err(|e| layer_error(e, &name))? {
            let mut entry = entry.map_err(|e| layer_error(e, &name))?;
            split.entry(&mut entry, &name, |_| Ok(()))?;
        }
    }
    let diff_id = recorder.finish()?;
    Ok(split.into_tree(diff_id))
}

/// A tar being split into its [`Tree`]: the stream is read through a
/// [`Recorder`] and where its files are is told entry by entry.
#[derive(Default)]
pub struct Split(Rc<RefCell<State>>);

impl Split {
    /// `inner`, recorded into this split as it is read.
    pub fn record<R>(&self, inner: R) -> Recorder<R> {
        Recorder {
            inner,
            state: self.0.clone(),
        }
    }

    /// Handles one entry of the recorded tar: `each` does what the caller
    /// does with it (reads its content or not); a regular file's content
    /// is hashed rather than recorded, all of it, whatever `each` read.
    pub fn entry<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        each: impl FnOnce(&mut tar::Entry<'_, R>) -> Result<()>,
    ) -> Result<()> {
        let size = entry.size();
        if !is_content(entry.header().entry_type()) || size == 0 {
            return each(entry);
        }
        if self.0.borrow().at != entry.raw_file_position() {
            return Err(Error::Io(format!(
                "{name}: the tar reader read ahead of an entry's content"
            )));
        }
        self.0.borrow_mut().start_file();
        each(entry)?;
        // What `each` left of the content, hashed too.
        std::io::copy(entry, &mut std::io::sink()).map_err(|e| layer_error(e, name))?;
        let read = self.0.borrow().at - entry.raw_file_position();
        if read != size {
            return Err(invalid(format!("{name}: an entry's content is truncated")));
        }
        let path = entry.path_bytes().into_owned();
        self.0.borrow_mut().end_file(path, size)
    }

    /// The tree, once the recorder was read to its end.
    pub fn into_tree(self, diff_id: Digest) -> Tree {
        let mut state = self.0.take();
        state.flush_raw();
        Tree {
            diff_id,
            parts: state.parts,
        }
    }
}

/// Entry types whose data is a file's content: what a rebuild takes from
/// elsewhere. A GNU sparse file's data is not (it is the file without its
/// holes), so it stays raw, as do the data of every other type.
pub fn is_content(kind: tar::EntryType) -> bool {
    matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
}

/// What the recorder has seen.
#[derive(Default)]
struct State {
    /// Bytes read from the start of the tar.
    at: u64,
    parts: Vec<Part>,
    raw: Vec<u8>,
    /// Set while a file's content is being read.
    file: Option<Hasher>,
    /// Raw bytes recorded so far, checked against [`MAX_DECODED`].
    recorded: u64,
}

impl State {
    fn flush_raw(&mut self) {
        if !self.raw.is_empty() {
            self.parts.push(Part::Raw(std::mem::take(&mut self.raw)));
        }
    }

    fn start_file(&mut self) {
        self.flush_raw();
        self.file = Some(Hasher::new(Algorithm::Sha256));
    }

    fn end_file(&mut self, path: Vec<u8>, size: u64) -> Result<()> {
        let hasher = self.file.take().expect("a file was started");
        let sha256 = hasher
            .sum()
            .try_into()
            .map_err(|_| Error::Io("the host's sha256 is not 32 bytes".into()))?;
        self.recorded += path.len() as u64 + 45;
        self.parts.push(Part::File(File { path, size, sha256 }));
        Ok(())
    }
}

/// The tar stream, recorded on its way to the tar reader.
pub struct Recorder<R> {
    inner: R,
    state: Rc<RefCell<State>>,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.borrow_mut();
        state.at += n as u64;
        if let Some(hasher) = &state.file {
            hasher.update(&buf[..n]);
        } else {
            state.recorded += n as u64;
            if state.recorded > MAX_DECODED {
                return Err(crate::content::new_blob::to_io(Error::TooLarge(format!(
                    "the layer's tree would exceed {MAX_DECODED} bytes"
                ))));
            }
            state.raw.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R: TarSource> TarSource for Recorder<R> {
    fn name(&self) -> String {
        self.inner.name()
    }

    /// Records the rest too (the end marker and what follows it are part
    /// of the diff id), then gives the inner stream's digest.
    fn finish(mut self) -> Result<Digest> {
        let name = self.name();
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| from_io(e, &name))?;
        self.inner.finish()
    }
}
