//! `diff`: a snapshot's own tree (the upper layer of its overlay) as an
//! OCI layer. Overlay whiteouts (character devices 0/0) become `.wh.`
//! entries and opaque directories get `.wh..wh..opq`; entries are written
//! depth first in byte order of their names with the tree's own modes,
//! owners and times, so the same tree always gives the same bytes.

use std::collections::HashMap;
use std::io::Write;

use crate::bindings::exports::kist::content::snapshots::Layer;
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::trees::{self, Node, NodeKind};
use crate::bindings::wasi::filesystem::types::DescriptorFlags;
use crate::content::new_blob::{DescriptorReader, NewBlob, from_io};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid, precondition};
use crate::shared::fs;
use crate::snapshots::records::{self, Lookup, State};
use crate::snapshots::tree::{self, join};

/// Hashes what is written through it (the uncompressed tar: the diff id).
struct Hashing<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The tar is buffered before it is hashed: tar writes a 512-byte header
/// at a time, and each hasher update is a call into the host.
type Out = tar::Builder<std::io::BufWriter<Hashing<flate2::write::GzEncoder<NewBlob>>>>;

/// Stores the changes of `key` as a layer blob held by `holder`.
pub fn diff(key: &str, holder: &str) -> Result<Layer> {
    let all = records::current()?;
    let record = all.record(key)?;
    if record.kind == State::View {
        return Err(precondition(format!(
            "{key:?} is a view: it has no changes"
        )));
    }
    let root = tree::fs_path(record.id);
    let gz = flate2::write::GzEncoder::new(NewBlob::create()?, flate2::Compression::default());
    let hashing = Hashing {
        inner: gz,
        hasher: Hasher::new(Algorithm::Sha256),
    };
    let mut out = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, hashing));
    out.mode(tar::HeaderMode::Complete);
    let mut walk = Walk {
        root: &root,
        links: HashMap::new(),
    };
    walk.dir("", &mut out)?;
    let io = |e| from_io(e, &root);
    let hashing = out
        .into_inner()
        .map_err(io)?
        .into_inner()
        .map_err(|e| from_io(e.into_error(), &root))?;
    let diff_id = Digest::of(Algorithm::Sha256, &hashing.hasher);
    let (digest, size) = hashing.inner.finish().map_err(io)?.publish(holder)?;
    Ok(Layer {
        digest: digest.to_string(),
        size,
        diff_id: diff_id.to_string(),
    })
}

/// One walk over a tree.
struct Walk<'a> {
    root: &'a str,
    /// Files with more than one link already written, by inode.
    links: HashMap<u64, String>,
}

impl Walk<'_> {
    fn full(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root)
    }

    /// Writes the entries under the directory `rel` (`""`: the root).
    fn dir(&mut self, rel: &str, out: &mut Out) -> Result<()> {
        let path = if rel.is_empty() {
            self.root.to_owned()
        } else {
            self.full(rel)
        };
        // A name that is not UTF-8 cannot cross WASI 0.2 (names are strings),
        // and `apply` refuses one: said plainly, naming the directory.
        let listed = fs::list_dir(&path).map_err(|e| match e {
            Error::Io(m) if m.contains("illegal byte sequence") || m.contains("Illegal byte") => {
                invalid(format!(
                    "{path} holds a name that is not UTF-8: layers carry UTF-8 names \
                     (apply refuses others); rename it"
                ))
            }
            e => e,
        })?;
        let mut names: Vec<String> = listed
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        for name in names {
            self.entry(&join(rel, &name), &name, out)?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &str, name: &str, out: &mut Out) -> Result<()> {
        let full = self.full(rel);
        let node = trees::stat(&full).map_err(|e| tree::error(&full, e))?;
        let io = |e| from_io(e, &full);
        let mut header = header(&node);
        match node.kind {
            NodeKind::CharacterDevice if node.rdev == (0, 0) => {
                let (parent, _) = rel.rsplit_once('/').unwrap_or(("", rel));
                let path = join(parent, &format!(".wh.{name}"));
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(0);
                out.append_data(&mut header, path, std::io::empty())
                    .map_err(io)?;
            }
            NodeKind::Directory => {
                let xattrs = trees::xattrs(&full).map_err(|e| tree::error(&full, e))?;
                pax(out, &xattrs).map_err(io)?;
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                out.append_data(&mut header, format!("{rel}/"), std::io::empty())
                    .map_err(io)?;
                if xattrs
                    .iter()
                    .any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y")
                {
                    let mut opaque = header.clone();
                    opaque.set_entry_type(tar::EntryType::Regular);
                    out.append_data(&mut opaque, format!("{rel}/.wh..wh..opq"), std::io::empty())
                        .map_err(io)?;
                }
                self.dir(rel, out)?;
            }
            NodeKind::Symlink => {
                let target = trees::read_link(&full).map_err(|e| tree::error(&full, e))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                out.append_link(&mut header, rel, target).map_err(io)?;
            }
            NodeKind::File => {
                if node.links > 1 {
                    if let Some(first) = self.links.get(&node.inode) {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        return out.append_link(&mut header, rel, first).map_err(io);
                    }
                    self.links.insert(node.inode, rel.to_owned());
                }
                let xattrs = trees::xattrs(&full).map_err(|e| tree::error(&full, e))?;
                pax(out, &xattrs).map_err(io)?;
                let fd = fs::open_existing(&full, DescriptorFlags::READ)?.ok_or(Error::NotFound)?;
                let reader = DescriptorReader {
                    fd: &fd,
                    path: full.clone(),
                    at: 0,
                    size: node.size,
                };
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(node.size);
                out.append_data(&mut header, rel, reader).map_err(io)?;
            }
            // What `apply` would refuse is not written: the layer diff makes
            // must apply again.
            NodeKind::CharacterDevice | NodeKind::BlockDevice => {
                return Err(invalid(format!(
                    "{rel} is a device node: layers carry none (apply refuses them); remove it \
                     from the snapshot to diff it"
                )));
            }
            NodeKind::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_size(0);
                out.append_data(&mut header, rel, std::io::empty())
                    .map_err(io)?;
            }
            // A socket is not content: tar has no entry for it.
            NodeKind::Socket => {}
        }
        Ok(())
    }
}

/// A header with what `node` says of mode, owner and time.
fn header(node: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(node.mode);
    h.set_uid(node.uid.into());
    h.set_gid(node.gid.into());
    h.set_mtime(node.mtime.seconds);
    h
}

/// Writes the `user.` and `security.` xattrs as a PAX header for the next
/// entry (overlay's own `trusted.` ones are whiteout markers, not content).
fn pax(out: &mut Out, xattrs: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let kept: Vec<(String, &[u8])> = xattrs
        .iter()
        .filter(|(k, _)| k.starts_with("user.") || k.starts_with("security."))
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    out.append_pax_extensions(kept.iter().map(|(k, v)| (k.as_str(), *v)))
}
