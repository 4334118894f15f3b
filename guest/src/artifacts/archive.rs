//! Deterministic `.tar.gz` archives of a directory the caller passed in
//! (see `archive-options` in `wit/storer.wit` for the rules).

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::artifacts::extract::link_escapes;
use crate::bindings::exports::kist::content::storer::ArchiveOptions;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags,
};
use crate::content::new_blob::{DescriptorReader, NewBlob, from_io};
use crate::shared::error::{Error, Result, fs as fs_error, invalid};
use crate::shared::fs::next_entry;

/// Directories of version-control systems, never archived.
const VCS_DIRS: [&str; 5] = [".git", ".hg", ".svn", ".bzr", ".jj"];

/// Writes the archive of `dir` into `out`.
pub fn write(dir: &Descriptor, options: &ArchiveOptions, out: &mut NewBlob) -> Result<()> {
    let ignore = matcher(&options.ignore)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut walk = Walk {
        ignore,
        max_size: options.max_size,
        total: 0,
    };
    walk.dir(dir, "", &mut tar)?;
    let gz = tar.into_inner().map_err(|e| from_io(e, "archive"))?;
    gz.finish().map_err(|e| from_io(e, "archive"))?;
    Ok(())
}

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

struct Walk {
    ignore: Gitignore,
    max_size: u64,
    total: u64,
}

type Tar<'a> = tar::Builder<flate2::write::GzEncoder<&'a mut NewBlob>>;

impl Walk {
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
                    append(tar, &mut header, &format!("{path}/"), std::io::empty())?;
                    self.dir(&child, &format!("{path}/"), tar)?;
                }
                DescriptorType::RegularFile => self.file(dir, &name, &path, tar)?,
                DescriptorType::SymbolicLink => {
                    let target = dir
                        .readlink_at(&name)
                        .map_err(|e| fs_error("readlink", &path, e))?;
                    if link_escapes(&path, &target) {
                        return Err(invalid(format!(
                            "{path}: symlink to {target:?} points outside the directory"
                        )));
                    }
                    let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                    tar.append_link(&mut header, &path, &target)
                        .map_err(|e| from_io(e, "archive"))?;
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
        append(tar, &mut header, path, reader)
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

fn append(
    tar: &mut Tar<'_>,
    header: &mut tar::Header,
    path: &str,
    data: impl std::io::Read,
) -> Result<()> {
    tar.append_data(header, path, data)
        .map_err(|e| from_io(e, "archive"))
}
