//! `apply`: a layer blob (tar, tar+gzip, tar+zstd) unpacked into an empty
//! active snapshot, OCI whiteouts turned into overlay ones.
//!
//! The tree is built in `snapshots/<id>/apply` and moved onto the
//! snapshot's `fs` at the end: a refused entry, an error or a crash leaves
//! the snapshot as empty as it was (a crashed build is swept by
//! `cleanup`). Every path is checked against what this layer made so far:
//! the tree starts empty, so no entry can reach through a symlink, and
//! every parent directory on the way is one this layer created.

use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use crate::bindings::kist::content::trees::{self, Attributes};
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use crate::content::new_blob::from_io;
use crate::deltas::layers;
use crate::deltas::split::Split;
use crate::retention::quota;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, fs as fs_error, invalid, precondition};
use crate::shared::fs;
use crate::snapshots::inflated::{CHUNK, Inflated, Placer, TarSource, layer_error};
use crate::snapshots::records::{self, Lookup, State};
use crate::snapshots::tree::{self, join};

/// OCI whiteout prefix, and the opaque-directory marker.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// What each entry costs against `max-size` besides its data: its header.
const ENTRY_COST: u64 = 512;
/// Unpacked bytes are charged against the holder's quotas once this many
/// are due (a charge rewrites the quota counters: not one per small
/// file); what is left is charged at the end.
const CHARGE_STEP: u64 = 1 << 20;
/// xattr prefixes kept from a layer: overlay's own (`trusted.overlay.*`)
/// must come from whiteout conversion only, never from a layer.
const KEPT_XATTRS: [&str; 2] = ["user.", "security."];

/// Unpacks `blob` into the active snapshot `key`; returns the diff id.
/// What it unpacks is charged, as it goes, against the quotas of the
/// snapshot's holder: a layer that unpacks past them (a gzip bomb) stops
/// there with `no-space`, having written at most a step past them.
pub fn apply(key: &str, blob: &Digest, media_type: &str, max_size: u64) -> Result<Digest> {
    unpack(key, max_size, None, None, |_| {
        Inflated::open(blob, media_type)
    })
}

/// As [`apply`], and the layer's tree (its files by content, for delta
/// pulls) is recorded on the way and kept, so that a delta pull can use
/// this layer as a base without reading it again: for image layers
/// (desired-state layers have no delta pulls, and release their blob).
pub fn apply_as_base(key: &str, blob: &Digest, media_type: &str, max_size: u64) -> Result<Digest> {
    let split = Split::default();
    let diff_id = unpack(key, max_size, None, Some(&split), |_| {
        Ok(split.record(Inflated::open(blob, media_type)?))
    })?;
    // A by-product: the layer is applied whether or not it could be kept
    // (a delta pull derives it again then).
    let _ = layers::keep_tree(blob, split.into_tree(diff_id.clone()));
    Ok(diff_id)
}

/// Unpacks the tar `open` gives (called with the path of the tree being
/// built) into the active snapshot `key`, as [`apply`] does; with
/// `expected`, a tar of another digest is refused and leaves the snapshot
/// empty; with `split`, the tar is read through it (see [`Split`]).
/// Returns the tar's digest.
pub fn unpack<S: TarSource>(
    key: &str,
    max_size: u64,
    expected: Option<&Digest>,
    split: Option<&Split>,
    open: impl FnOnce(&str) -> Result<S>,
) -> Result<Digest> {
    let all = records::current()?;
    let record = all.record(key)?;
    if record.kind != State::Active {
        return Err(precondition(format!("{key:?} is not an active snapshot")));
    }
    let id = record.id;
    let holder = record.holders.iter().next().cloned();
    let _building = tree::apply_lock(id)?;
    if !fs::list_dir(&tree::fs_path(id))?
        .unwrap_or_default()
        .is_empty()
    {
        return Err(precondition(format!(
            "{key:?} is not empty: apply unpacks into a fresh snapshot"
        )));
    }
    let staging = tree::apply_path(id);
    tree::remove_path(&staging)?;
    fs::mkdir(&staging)?;
    let built = (|| {
        let dir = fs::open_dir(&staging)?.ok_or(Error::NotFound)?;
        let mut unpacker = Unpacker::new(&staging, &dir, max_size, holder);
        let diff_id = unpacker.run(open(&staging)?, split)?;
        if let Some(e) = expected.filter(|e| **e != diff_id) {
            return Err(invalid(format!(
                "the layer's tar has digest {diff_id}, not the diff id {e}"
            )));
        }
        unpacker.finish()?;
        Ok(diff_id)
    })();
    match built {
        Ok(diff_id) => {
            // `fs` is empty (checked above, and we hold the apply lock).
            tree::remove_path(&tree::fs_path(id))?;
            fs::rename(&staging, &tree::fs_path(id))?;
            Ok(diff_id)
        }
        Err(e) => {
            let _ = tree::remove_path(&staging);
            Err(e)
        }
    }
}

/// What is at a path of the tree being built.
#[derive(Clone, Copy, PartialEq)]
enum Made {
    Dir,
    Symlink,
    Other,
}

/// The state of one unpacking.
struct Unpacker<'a> {
    /// The tree's path from the store root (for the `trees` capability).
    root: &'a str,
    /// The tree's directory (for WASI calls, relative paths).
    dir: &'a Descriptor,
    max_size: u64,
    used: u64,
    /// Who the unpacked bytes are charged to, and how many were so far.
    holder: Option<String>,
    charged: u64,
    made: HashMap<String, Made>,
    /// Directories' attributes, set at the end (writing into a directory
    /// changes its time; a read-only one could not be written into).
    dir_attributes: Vec<(String, Attributes)>,
    buffer: Vec<u8>,
    /// The source's way to write file contents itself, if it has one.
    placer: Option<Rc<dyn Placer>>,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a str, dir: &'a Descriptor, max_size: u64, holder: Option<String>) -> Self {
        Self {
            root,
            dir,
            max_size,
            used: 0,
            holder,
            charged: 0,
            made: HashMap::from([(String::new(), Made::Dir)]),
            dir_attributes: Vec::new(),
            buffer: Vec::new(),
            placer: None,
        }
    }

    fn full(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.to_owned()
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    fn run<S: TarSource>(&mut self, mut source: S, split: Option<&Split>) -> Result<Digest> {
        let name = source.name();
        self.placer = source.placer();
        // Borrows the stream for the entries only: the rest is read after.
        let mut archive = tar::Archive::new(&mut source);
        let entries = archive.entries().map_err(|e| layer_error(e, &name))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| layer_error(e, &name))?;
            let unpacked = match split {
                Some(split) => split.entry(&mut entry, &name, |e| self.entry(e)),
                None => self.entry(&mut entry),
            };
            unpacked.map_err(|e| match e {
                Error::InvalidArgument(m) => {
                    let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                    invalid(format!("{name}: entry {path:?}: {m}"))
                }
                other => other,
            })?;
        }
        source.finish()
    }

    /// Charges what was unpacked and not charged yet to the holder.
    fn charge(&mut self) -> Result<()> {
        if let Some(holder) = self.holder.as_deref() {
            quota::charge(holder, self.used - self.charged)?;
        }
        self.charged = self.used;
        Ok(())
    }

    /// Charges the rest, and sets the directories' attributes, deepest
    /// first.
    fn finish(&mut self) -> Result<()> {
        self.charge()?;
        let mut dirs = std::mem::take(&mut self.dir_attributes);
        dirs.sort_by_key(|(p, _)| {
            std::cmp::Reverse(p.matches('/').count() + usize::from(!p.is_empty()))
        });
        for (rel, attributes) in dirs {
            let full = self.full(&rel);
            trees::set_attributes(&full, attributes).map_err(|e| tree::error(&full, e))?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let size = entry.size();
        self.used = self.used.saturating_add(size).saturating_add(ENTRY_COST);
        if self.used > self.max_size {
            return Err(Error::TooLarge(format!(
                "the layer unpacks to more than max-size {} bytes (files' data plus \
                 {ENTRY_COST} bytes per entry)",
                self.max_size
            )));
        }
        // Before its bytes are written: what has not been charged yet, once
        // it makes a step (or the entry alone is large).
        if self.used - self.charged >= CHARGE_STEP {
            self.charge()?;
        }
        let rel = clean(&entry.path_bytes())?;
        let attributes = attributes(entry.header())?;
        let (parent, base) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if let Some(hidden) = base.strip_prefix(WHITEOUT) {
            return self.whiteout(parent, base, hidden, attributes);
        }
        match kind {
            tar::EntryType::Directory => {
                self.directory(&rel)?;
                self.dir_attributes.push((rel.clone(), attributes));
                self.xattrs(&rel, entry)?;
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.replace(&rel)?;
                self.file(&rel, entry)?;
                self.made.insert(rel.clone(), Made::Other);
                self.xattrs(&rel, entry)?;
            }
            tar::EntryType::Symlink => {
                let target = link_name(entry)?;
                self.replace(&rel)?;
                let full = self.full(&rel);
                trees::symlink(&full, &target).map_err(|e| tree::error(&full, e))?;
                self.made.insert(rel.clone(), Made::Symlink);
            }
            tar::EntryType::Link => {
                let target = clean(link_name(entry)?.as_bytes())?;
                if self.made.get(&target).is_none_or(|m| *m == Made::Dir) {
                    return Err(invalid(format!(
                        "hard link to {target:?}, which this layer did not unpack before it"
                    )));
                }
                self.replace(&rel)?;
                self.dir
                    .link_at(PathFlags::empty(), &target, self.dir, &rel)
                    .map_err(|e| fs_error("link", &self.full(&rel), e))?;
                self.made.insert(rel, Made::Other);
                // A hard link shares its target's attributes.
                return Ok(());
            }
            tar::EntryType::Fifo => {
                self.replace(&rel)?;
                let full = self.full(&rel);
                trees::make_fifo(&full).map_err(|e| tree::error(&full, e))?;
                self.made.insert(rel.clone(), Made::Other);
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(invalid(
                    "device nodes are refused (only whiteouts become devices)",
                ));
            }
            other => return Err(invalid(format!("entry type {other:?} is not supported"))),
        }
        let full = self.full(&rel);
        trees::set_attributes(&full, attributes).map_err(|e| tree::error(&full, e))
    }

    /// `.wh.<hidden>` in `parent`: a whiteout, or (`.wh..wh..opq`) an
    /// opaque directory.
    fn whiteout(
        &mut self,
        parent: &str,
        base: &str,
        hidden: &str,
        attributes: Attributes,
    ) -> Result<()> {
        self.ensure_dir(parent)?;
        if base == OPAQUE {
            let full = self.full(parent);
            return trees::set_xattr(&full, "trusted.overlay.opaque", b"y")
                .map_err(|e| tree::error(&full, e));
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(invalid("a whiteout of nothing, `.` or `..`"));
        }
        if hidden.starts_with(WHITEOUT) {
            // Other aufs metadata (`.wh..wh.plnk`, ...): not content.
            return Ok(());
        }
        let rel = join(parent, hidden);
        self.replace(&rel)?;
        let full = self.full(&rel);
        trees::make_whiteout(&full).map_err(|e| tree::error(&full, e))?;
        self.made.insert(rel, Made::Other);
        trees::set_attributes(&full, attributes).map_err(|e| tree::error(&full, e))
    }

    /// Makes sure `rel` and every directory above it exist and are
    /// directories this layer made (never a symlink).
    fn ensure_dir(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        for (i, _) in rel.match_indices('/') {
            self.step(&rel[..i])?;
        }
        self.step(rel)
    }

    fn step(&mut self, prefix: &str) -> Result<()> {
        match self.made.get(prefix) {
            Some(Made::Dir) => Ok(()),
            Some(Made::Symlink) => Err(invalid(format!(
                "{prefix:?} is a symlink: a write through it is refused"
            ))),
            Some(Made::Other) => Err(invalid(format!("{prefix:?} is not a directory"))),
            None => self.mkdir(prefix),
        }
    }

    fn mkdir(&mut self, rel: &str) -> Result<()> {
        self.dir
            .create_directory_at(rel)
            .map_err(|e| fs_error("mkdir", &self.full(rel), e))?;
        self.made.insert(rel.to_owned(), Made::Dir);
        Ok(())
    }

    fn directory(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let (parent, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        self.ensure_dir(parent)?;
        match self.made.get(rel) {
            Some(Made::Dir) => Ok(()),
            Some(_) => {
                self.replace(rel)?;
                self.mkdir(rel)
            }
            None => self.mkdir(rel),
        }
    }

    /// Clears the way for a non-directory at `rel`: parents made, what was
    /// there removed.
    fn replace(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() {
            return Err(invalid("the tree's root can only be a directory"));
        }
        let (parent, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        self.ensure_dir(parent)?;
        match self.made.remove(rel) {
            None => Ok(()),
            Some(Made::Dir) => {
                let full = self.full(rel);
                tree::remove_path(&full)?;
                let prefix = format!("{rel}/");
                self.made.retain(|p, _| !p.starts_with(&prefix));
                self.dir_attributes
                    .retain(|(p, _)| p != rel && !p.starts_with(&prefix));
                Ok(())
            }
            Some(_) => self
                .dir
                .unlink_file_at(rel)
                .map_err(|e| fs_error("unlink", &self.full(rel), e)),
        }
    }

    fn file<R: Read>(&mut self, rel: &str, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let fd = self
            .dir
            .open_at(
                PathFlags::empty(),
                rel,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                DescriptorFlags::WRITE,
            )
            .map_err(|e| fs_error("create", &self.full(rel), e))?;
        if let Some(placer) = &self.placer
            && placer.place(&fd, entry.size())?
        {
            return Ok(());
        }
        self.buffer.resize(CHUNK, 0);
        let mut at = 0u64;
        loop {
            let n = read_full(entry, &mut self.buffer).map_err(|e| from_io(e, rel))?;
            if n == 0 {
                return Ok(());
            }
            fs::write_all(&fd, rel, &self.buffer[..n], at)?;
            at += n as u64;
        }
    }

    /// Sets the `user.` and `security.` xattrs of the entry's PAX header.
    fn xattrs<R: Read>(&mut self, rel: &str, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let Some(extensions) = entry.pax_extensions().map_err(|e| from_io(e, rel))? else {
            return Ok(());
        };
        let full = self.full(rel);
        for extension in extensions {
            let extension = extension.map_err(|e| from_io(e, rel))?;
            let Some(name) = extension
                .key()
                .ok()
                .and_then(|k| k.strip_prefix("SCHILY.xattr."))
            else {
                continue;
            };
            if KEPT_XATTRS.iter().any(|p| name.starts_with(p)) {
                trees::set_xattr(&full, name, extension.value_bytes())
                    .map_err(|e| tree::error(&full, e))?;
            }
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the entry ends.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// An entry's path inside the tree: relative, `/`-separated, without `.`
/// components; absolute paths and `..` are refused. `""` is the root.
pub fn clean(raw: &[u8]) -> Result<String> {
    let path = std::str::from_utf8(raw).map_err(|_| invalid("the path is not UTF-8"))?;
    if path.starts_with('/') {
        return Err(invalid("absolute paths are refused"));
    }
    if path.contains('\0') {
        return Err(invalid("the path contains NUL"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("`..` is refused")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let target = entry
        .link_name_bytes()
        .ok_or_else(|| invalid("a link without a target"))?;
    String::from_utf8(target.into_owned()).map_err(|_| invalid("the link target is not UTF-8"))
}

/// A numeric header field: empty (all NUL or spaces) reads as 0, as Go's
/// archive/tar (which wrote most layers) reads it.
fn numeric(field: &[u8], parsed: std::io::Result<u64>, what: &str) -> Result<u64> {
    if field.iter().all(|b| *b == 0 || *b == b' ') {
        return Ok(0);
    }
    parsed.map_err(|_| invalid(format!("unreadable {what} in the header")))
}

fn attributes(header: &tar::Header) -> Result<Attributes> {
    let old = header.as_old();
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| invalid(format!("{what} {v} is too large")))
    };
    Ok(Attributes {
        mode: numeric(&old.mode, header.mode().map(u64::from), "mode")? as u32 & 0o7777,
        uid: id(numeric(&old.uid, header.uid(), "uid")?, "uid")?,
        gid: id(numeric(&old.gid, header.gid(), "gid")?, "gid")?,
        mtime: Some(Datetime {
            seconds: numeric(&old.mtime, header.mtime(), "mtime")?,
            nanoseconds: 0,
        }),
    })
}
