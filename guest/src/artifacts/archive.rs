//! Deterministic `.tar.gz` archives of a directory the caller passed in
//! (see `archive-options` in `wit/storer.wit` for the rules).

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::artifacts::links::{Links, escapes};
use crate::bindings::exports::kist::content::storer::ArchiveOptions;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};
use crate::content::gzipped::Gzipped;
use crate::content::new_blob::{DescriptorReader, NewBlob, from_io};
use crate::shared::error::{Error, Result, fs as fs_error, invalid};
use crate::shared::fs::next_entry;

/// Directories of version-control systems, never archived.
const VCS_DIRS: [&str; 5] = [".git", ".hg", ".svn", ".bzr", ".jj"];

/// Writes the archive of `dir` into `out`.
pub fn write(dir: &Descriptor, options: &ArchiveOptions, out: &mut NewBlob) -> Result<()> {
    let ignore = matcher(&options.ignore)?;
    let mut tar = tar::Builder::new(Gzipped::new(LEVEL, out));
    let mut walk = Walk {
        ignore,
        max_size: options.max_size,
        total: 0,
        links: DiskLinks(dir),
    };
    walk.dir(dir, "", &mut tar)?;
    let gz = tar.into_inner().map_err(|e| from_io(e, "archive"))?;
    gz.finish().map(drop).map_err(|e| from_io(e, "archive"))
}

/// gzip's default level, which `tar czf` uses.
const LEVEL: u8 = 6;

/// The ignore patterns as one gitignore file at the archive's root.
fn matcher(patterns: &[String]) -> Result<Gitignore> {
    let mut builder = GitignoreBuilder::new("");
    for p in patterns {
        builder
            .add_line(None, p)
            .map_err(|e| invalid(format!("ignore pattern {p:?}: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| invalid(format!("ignore patterns: {e}")))
}

struct Walk<'a> {
    ignore: Gitignore,
    max_size: u64,
    total: u64,
    links: DiskLinks<'a>,
}

/// The symlinks of the directory being archived, read as they are asked
/// for.
struct DiskLinks<'a>(&'a Descriptor);

impl Links for DiskLinks<'_> {
    fn target(&mut self, path: &str) -> Result<Option<String>> {
        match self.0.stat_at(PathFlags::empty(), path) {
            Ok(s) if s.type_ == DescriptorType::SymbolicLink => self
                .0
                .readlink_at(path)
                .map(Some)
                .map_err(|e| fs_error("readlink", path, e)),
            Ok(_) | Err(ErrorCode::NoEntry) => Ok(None),
            Err(e) => Err(fs_error("stat", path, e)),
        }
    }
}

type Tar<'a> = tar::Builder<Gzipped<&'a mut NewBlob>>;

impl Walk<'_> {
    /// Archives the entries of `dir` (at `prefix` in the archive) in name
    /// order.
    fn dir(&mut self, dir: &Descriptor, prefix: &str, tar: &mut Tar<'_>) -> Result<()> {
        let shown = if prefix.is_empty() { "." } else { prefix };
        let entries = dir
            .read_directory()
            .map_err(|e| fs_error("list", shown, e))?;
        let mut names = Vec::new();
        while let Some(entry) = next_entry(&entries, shown)? {
            names.push((entry.name, entry.type_));
        }
        names.sort();
        for (name, kind) in names {
            let path = format!("{prefix}{name}");
            let is_dir = kind == DescriptorType::Directory;
            if (is_dir && VCS_DIRS.contains(&name.as_str()))
                || self.ignore.matched(&path, is_dir).is_ignore()
            {
                continue;
            }
            match kind {
                DescriptorType::Directory => {
                    let child = dir
                        .open_at(
                            PathFlags::empty(),
                            &name,
                            OpenFlags::DIRECTORY,
                            DescriptorFlags::READ,
                        )
                        .map_err(|e| fs_error("open", &path, e))?;
                    let mut header = header(tar::EntryType::Directory, 0o755, 0);
                    append(
                        tar,
                        &mut header,
                        &format!("{path}/"),
                        None,
                        std::io::empty(),
                    )?;
                    self.dir(&child, &format!("{path}/"), tar)?;
                }
                DescriptorType::RegularFile => self.file(dir, &name, &path, tar)?,
                DescriptorType::SymbolicLink => {
                    let target = dir
                        .readlink_at(&name)
                        .map_err(|e| fs_error("readlink", &path, e))?;
                    if escapes(&mut self.links, &path, &target)? {
                        return Err(invalid(format!(
                            "{path}: symlink to {target:?} points outside the directory"
                        )));
                    }
                    let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                    append(tar, &mut header, &path, Some(&target), std::io::empty())?;
                }
                other => {
                    return Err(invalid(format!(
                        "{path}: cannot archive a {other:?}; only files, directories and symlinks"
                    )));
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, dir: &Descriptor, name: &str, path: &str, tar: &mut Tar<'_>) -> Result<()> {
        let fd = dir
            .open_at(
                PathFlags::empty(),
                name,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(|e| fs_error("open", path, e))?;
        let size = fd.stat().map_err(|e| fs_error("stat", path, e))?.size;
        self.total += size;
        if self.total > self.max_size {
            return Err(Error::TooLarge(format!(
                "the files to archive exceed max-size {} bytes (at {path})",
                self.max_size
            )));
        }
        let mut header = header(tar::EntryType::Regular, 0o644, size);
        let reader = DescriptorReader {
            fd: &fd,
            path: path.to_owned(),
            at: 0,
            size,
        };
        append(tar, &mut header, path, None, reader)
    }
}

/// A header with everything that varies between machines zeroed.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Longest name a header holds; longer ones go in a GNU long-name entry.
const NAME: usize = 100;

/// Appends the entry `path` (a link to `target`) with `data`. Names are
/// written byte for byte, as the tar crate writes them on Unix: on other
/// targets, wasm32 among them, its own path handling turns `\` into `/`.
/// A name longer than a header holds goes first in a GNU long-name entry
/// (`L` for the path, `K` for a link's target), as GNU tar writes it.
fn append(
    tar: &mut Tar<'_>,
    header: &mut tar::Header,
    path: &str,
    target: Option<&str>,
    data: impl std::io::Read,
) -> Result<()> {
    let io = |e| from_io(e, "archive");
    if path.len() > NAME {
        long_name(tar, b'L', path)?;
    }
    copy_name(&mut header.as_old_mut().name, truncated(path));
    if let Some(target) = target {
        if target.len() > NAME {
            long_name(tar, b'K', target)?;
        } else {
            copy_name(&mut header.as_old_mut().linkname, target);
        }
    }
    header.set_cksum();
    tar.append(header, data).map_err(io)
}

/// A GNU long-name entry of `kind` holding `name`.
fn long_name(tar: &mut Tar<'_>, kind: u8, name: &str) -> Result<()> {
    let mut header = header(tar::EntryType::new(kind), 0o644, name.len() as u64 + 1);
    copy_name(&mut header.as_old_mut().name, "././@LongLink");
    header.set_cksum();
    let data = name
        .as_bytes()
        .iter()
        .copied()
        .chain([0])
        .collect::<Vec<u8>>();
    tar.append(&header, data.as_slice())
        .map_err(|e| from_io(e, "archive"))
}

/// Copies `name` into a header field, NUL-terminated if it is shorter.
fn copy_name(field: &mut [u8], name: &str) {
    for (slot, byte) in field.iter_mut().zip(name.bytes().chain([0])) {
        *slot = byte;
    }
}

/// At most [`NAME`] bytes of `path`, cut at a character boundary.
fn truncated(path: &str) -> &str {
    let mut end = path.len().min(NAME);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}
