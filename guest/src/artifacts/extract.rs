//! Extracting an artifact's `.tar.gz` into a directory the caller passed
//! in: checked in full (paths, links, total size) before anything is
//! written.

use std::collections::BTreeMap;
use std::io::Read;

use crate::artifacts::links::{Links, escapes, resolve};
use crate::bindings::exports::kist::content::storer::ExtractOptions;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};
use crate::content::new_blob::{DescriptorReader, from_io};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, fs as fs_error, invalid};
use crate::shared::fs;

/// OCI whiteout prefix, and the opaque-directory marker.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// One entry to write, already checked.
enum Item {
    Dir(String),
    File(String, u64),
    Link(String, String),
    Whiteout(String),
    Opaque(String),
}

/// What each entry costs against `max-size` besides its data: its tar
/// header. So the size cap bounds how many entries an archive creates.
const ENTRY_COST: u64 = 512;

/// Extracts the archive blob `digest` under `sub_path` into `dest`;
/// returns the bytes of file data written.
pub fn extract(
    digest: &Digest,
    sub_path: &str,
    dest: &Descriptor,
    options: &ExtractOptions,
) -> Result<u64> {
    let prefix = clean(sub_path, "sub-path")?;
    // Pass 1: check every entry and the total; nothing is written.
    let mut planner = Planner::new(&prefix, options);
    let (mut total, mut data) = (0u64, 0u64);
    for_each_entry(digest, |entry| {
        let Some(item) = planner.plan(entry)? else {
            return Ok(());
        };
        let size = match &item {
            Item::File(_, size) => *size,
            _ => 0,
        };
        data += size;
        total = total.saturating_add(size).saturating_add(ENTRY_COST);
        if total > options.max_size {
            return Err(Error::TooLarge(format!(
                "the archive holds more than max-size {} bytes (files' data plus {ENTRY_COST} \
                 bytes per entry)",
                options.max_size
            )));
        }
        Ok(())
    })?;
    // Pass 2: write, in archive order.
    let mut planner = Planner::new(&prefix, options);
    for_each_entry(digest, |entry| {
        let Some(item) = planner.plan(entry)? else {
            return Ok(());
        };
        write(dest, item, entry)
    })?;
    Ok(data)
}

/// Calls `each` on every entry of the archive blob `digest`.
fn for_each_entry(
    digest: &Digest,
    mut each: impl FnMut(
        &mut tar::Entry<'_, flate2::read::GzDecoder<DescriptorReader<'_>>>,
    ) -> Result<()>,
) -> Result<()> {
    let path = digest.blob_path();
    let fd = fs::open_existing(&path, DescriptorFlags::READ)?.ok_or(Error::NotFound)?;
    let size = fs::fstat(&fd, &path)?.size;
    let reader = DescriptorReader {
        fd: &fd,
        path: path.clone(),
        at: 0,
        size,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let entries = archive.entries().map_err(|e| from_io(e, &path))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| from_io(e, &path))?;
        each(&mut entry)?;
    }
    Ok(())
}

/// The symlinks an extraction has created so far, by their resolved path
/// in the destination: what later entries are resolved through.
#[derive(Default)]
struct ArchiveLinks(BTreeMap<String, String>);

impl Links for ArchiveLinks {
    fn target(&mut self, path: &str) -> Result<Option<String>> {
        Ok(self.0.get(path).cloned())
    }
}

/// Decides what each entry becomes, in archive order.
struct Planner<'a> {
    prefix: &'a str,
    options: &'a ExtractOptions,
    links: ArchiveLinks,
}

impl<'a> Planner<'a> {
    fn new(prefix: &'a str, options: &'a ExtractOptions) -> Self {
        Self {
            prefix,
            options,
            links: ArchiveLinks::default(),
        }
    }

    /// What to do with `entry`, `None` to skip it (outside the sub-path,
    /// or a kind not extracted such as a PAX header).
    fn plan(&mut self, entry: &tar::Entry<'_, impl Read>) -> Result<Option<Item>> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = clean(&raw, "entry")?;
        let Some(rel) = within(&path, self.prefix) else {
            return Ok(None);
        };
        if rel.is_empty() {
            return Ok(None); // the sub-path directory itself
        }
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
        let whiteouts = self.options.whiteouts;
        if whiteouts && dir.split('/').any(|p| p.starts_with(WHITEOUT)) {
            return Err(invalid(format!("{raw}: entries under a whiteout")));
        }
        // The directory an entry lands in, resolved through the links
        // created before it, must stay in the destination.
        let Some(dir) = resolve(&mut self.links, dir, true)? else {
            return Err(invalid(format!(
                "{raw}: its directory leads outside the destination through a symlink"
            )));
        };
        let here = |n: &str| format!("{}{n}", prefixed(&dir));
        if whiteouts && name == OPAQUE {
            return Ok(Some(Item::Opaque(dir)));
        }
        if whiteouts && let Some(target) = name.strip_prefix(WHITEOUT) {
            if matches!(target, "" | "." | "..") {
                return Err(invalid(format!("{raw}: a whiteout of {target:?}")));
            }
            return Ok(Some(Item::Whiteout(here(target))));
        }
        let header = entry.header();
        Ok(match header.entry_type() {
            tar::EntryType::Directory => Some(Item::Dir(here(name))),
            tar::EntryType::Regular | tar::EntryType::Continuous => Some(Item::File(
                here(name),
                header.size().map_err(|e| from_io(e, &raw))?,
            )),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let at = here(name);
                if escapes(&mut self.links, &at, &target)? {
                    return Err(invalid(format!(
                        "{raw}: symlink to {target:?} points outside the destination"
                    )));
                }
                self.links.0.insert(at.clone(), target.clone());
                Some(Item::Link(at, target))
            }
            tar::EntryType::Link => {
                return Err(invalid(format!("{raw}: hard links are not extracted")));
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(invalid(format!(
                    "{raw}: device and pipe entries are not extracted"
                )));
            }
            _ => None,
        })
    }
}

/// `path` without `./`, empty parts or a trailing `/`; absolute paths and
/// `..` are refused.
fn clean(path: &str, what: &str) -> Result<String> {
    if path.starts_with('/') {
        return Err(invalid(format!(
            "{what} {path:?}: absolute paths are not allowed"
        )));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("{what} {path:?}: `..` is not allowed"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `path` relative to `prefix`, if it is inside it.
fn within(path: &str, prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(path.to_owned());
    }
    match path.strip_prefix(prefix)? {
        "" => Some(String::new()),
        rest => rest.strip_prefix('/').map(str::to_owned),
    }
}

fn parent(rel: &str) -> String {
    rel.rsplit_once('/')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default()
}

fn prefixed(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

/// Writes one checked item into `dest`.
fn write(dest: &Descriptor, item: Item, data: &mut impl Read) -> Result<()> {
    match item {
        Item::Dir(path) => mkdirs(dest, &path),
        Item::File(path, size) => {
            mkdirs(dest, &parent(&path))?;
            let fd = dest
                .open_at(
                    PathFlags::empty(),
                    &path,
                    OpenFlags::CREATE | OpenFlags::TRUNCATE,
                    DescriptorFlags::WRITE,
                )
                .map_err(|e| fs_error("create", &path, e))?;
            let mut at = 0u64;
            let mut buf = vec![0; fs::CHUNK.min(size.max(1)) as usize];
            while at < size {
                let n = data.read(&mut buf).map_err(|e| from_io(e, &path))?;
                if n == 0 {
                    return Err(Error::Io(format!(
                        "{path}: the archive ended inside the file"
                    )));
                }
                fs::write_all(&fd, &path, &buf[..n], at)?;
                at += n as u64;
            }
            Ok(())
        }
        Item::Link(path, target) => {
            mkdirs(dest, &parent(&path))?;
            remove(dest, &path)?;
            dest.symlink_at(&target, &path)
                .map_err(|e| fs_error("symlink", &path, e))
        }
        Item::Whiteout(path) => remove(dest, &path),
        Item::Opaque(dir) => {
            let Ok(fd) = dest.open_at(
                PathFlags::empty(),
                &dir_or_dot(&dir),
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            ) else {
                return Ok(());
            };
            let entries = fd.read_directory().map_err(|e| fs_error("list", &dir, e))?;
            while let Some(entry) = fs::next_entry(&entries, &dir)? {
                remove(dest, &format!("{}{}", prefixed(&dir), entry.name))?;
            }
            Ok(())
        }
    }
}

fn dir_or_dot(dir: &str) -> String {
    if dir.is_empty() {
        ".".to_owned()
    } else {
        dir.to_owned()
    }
}

/// Creates `path` and its parents in `dest`.
fn mkdirs(dest: &Descriptor, path: &str) -> Result<()> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at = format!("{}{part}", prefixed(&at));
        match dest.create_directory_at(&at) {
            Ok(()) | Err(ErrorCode::Exist) => {}
            Err(e) => return Err(fs_error("mkdir", &at, e)),
        }
    }
    Ok(())
}

/// Removes `path` (a file, link or whole directory) from `dest` if present.
fn remove(dest: &Descriptor, path: &str) -> Result<()> {
    let stat = match dest.stat_at(PathFlags::empty(), path) {
        Ok(s) => s,
        Err(ErrorCode::NoEntry) => return Ok(()),
        Err(e) => return Err(fs_error("stat", path, e)),
    };
    if stat.type_ == DescriptorType::Directory {
        let fd = dest
            .open_at(
                PathFlags::empty(),
                path,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )
            .map_err(|e| fs_error("open", path, e))?;
        let entries = fd.read_directory().map_err(|e| fs_error("list", path, e))?;
        while let Some(entry) = fs::next_entry(&entries, path)? {
            remove(dest, &format!("{path}/{}", entry.name))?;
        }
        dest.remove_directory_at(path)
            .map_err(|e| fs_error("rmdir", path, e))
    } else {
        dest.unlink_file_at(path)
            .map_err(|e| fs_error("remove", path, e))
    }
}
