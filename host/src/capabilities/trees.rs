//! `kist:content/trees`: the file operations snapshots need that WASI 0.2
//! lacks (owners, modes, times, xattrs, whiteouts, symlinks with absolute
//! targets, inode numbers, block counts, removing mode-000 directories).
//!
//! Every path is resolved from a descriptor of the store's directory with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`, and
//! the last component is acted on with `*at` calls that do not follow it,
//! so a guest reaches nothing outside the store whatever links it planted.
//! Where Linux has no such `*at` call (chmod, xattrs) the object is
//! opened first without following and changed through that descriptor.

use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, StatxAttributes, StatxFlags, Timespec,
    Timestamps, XattrFlags,
};
use rustix::io::Errno;

use super::CapabilitiesView;
use crate::bindings::kist::content::trees::{Attributes, Host, Node, NodeKind, TreeError};
use crate::bindings::wasi::clocks::wall_clock::Datetime;

/// Longest path accepted, in bytes (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;
/// Largest extended attribute list or value read.
const XATTR_BUFFER: usize = 64 * 1024;

/// The store's directory, held open: every path starts here.
pub(crate) struct TreeRoot(OwnedFd);

impl TreeRoot {
    pub(crate) fn new(root: &Path) -> std::io::Result<Self> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(Self(rustix::fs::open(root, flags, Mode::empty())?))
    }

    /// Opens `path` (already checked) beneath the root, following nothing.
    fn open(&self, path: &str, flags: OFlags) -> Result<OwnedFd, TreeError> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV;
        rustix::fs::openat2(
            &self.0,
            path,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| os("open", path, e))
    }

    /// Opens the file at `path`, checked, following no symlink.
    pub(crate) fn open_file(&self, path: &str, flags: OFlags) -> Result<OwnedFd, TreeError> {
        check(path)?;
        self.open(path, flags)
    }

    /// The directory holding `path`'s last component, and that component.
    fn parent<'p>(&self, path: &'p str) -> Result<(Parent<'_>, &'p str), TreeError> {
        check(path)?;
        Ok(match path.rsplit_once('/') {
            Some((dir, name)) => (
                Parent::Owned(self.open(dir, OFlags::PATH | OFlags::DIRECTORY)?),
                name,
            ),
            None => (Parent::Root(self.0.as_fd()), path),
        })
    }
}

/// A parent directory: the root itself or one opened beneath it.
enum Parent<'a> {
    Root(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Root(fd) => *fd,
            Parent::Owned(fd) => fd.as_fd(),
        }
    }
}

/// Refuses paths that are not plain relative paths.
fn check(path: &str) -> Result<(), TreeError> {
    let bad = |why: &str| Err(TreeError::InvalidPath(format!("{path:?}: {why}")));
    if path.is_empty() || path.len() > MAX_PATH {
        return bad("empty or longer than 4096 bytes");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("absolute, or with an empty, `.` or `..` component");
    }
    Ok(())
}

/// Maps an OS error of `op` on `path`.
fn os(op: &str, path: &str, e: Errno) -> TreeError {
    match e {
        Errno::NOENT => TreeError::NotFound,
        Errno::EXIST => TreeError::Exists,
        // RESOLVE_BENEATH / NO_SYMLINKS / NO_XDEV refusals.
        Errno::XDEV | Errno::LOOP => TreeError::InvalidPath(format!(
            "{path:?}: goes through a symlink or another filesystem"
        )),
        Errno::PERM | Errno::ACCESS | Errno::OPNOTSUPP | Errno::NOSYS => {
            TreeError::Unsupported(format!("{op} {path}: {e}"))
        }
        other => TreeError::Io(format!("{op} {path}: {other}")),
    }
}

fn timestamp(t: &Datetime) -> Timespec {
    Timespec {
        tv_sec: t.seconds as i64,
        tv_nsec: t.nanoseconds.into(),
    }
}

fn node(st: &Stat) -> Node {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => NodeKind::Directory,
        FileType::Symlink => NodeKind::Symlink,
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharacterDevice => NodeKind::CharacterDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket => NodeKind::Socket,
        _ => NodeKind::File,
    };
    let device = matches!(kind, NodeKind::CharacterDevice | NodeKind::BlockDevice);
    let rdev = if device {
        (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev))
    } else {
        (0, 0)
    };
    Node {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev,
        inode: st.st_ino,
        links: st.st_nlink,
        size: st.st_size as u64,
        allocated: st.st_blocks as u64 * 512,
        mtime: Datetime {
            seconds: st.st_mtime as u64,
            nanoseconds: st.st_mtime_nsec as u32,
        },
    }
}

/// Opens `path` itself for its xattrs if it is a regular file or a
/// directory (a device would be opened as a device, a symlink cannot be):
/// `None` for anything else.
fn open_for_xattrs(root: &TreeRoot, path: &str) -> Result<Option<OwnedFd>, TreeError> {
    let (dir, name) = root.parent(path)?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| os("stat", path, e))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile | FileType::Directory => {
            Ok(Some(root.open(path, OFlags::RDONLY | OFlags::NONBLOCK)?))
        }
        _ => Ok(None),
    }
}

/// chmod through a descriptor of the object itself: `chmod` follows
/// symlinks, and `fchmod` refuses `O_PATH` descriptors.
fn chmod_fd(fd: &OwnedFd, mode: u32) -> rustix::io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(mode & 0o7777))
}

impl Host for CapabilitiesView<'_> {
    fn set_attributes(
        &mut self,
        path: String,
        a: Attributes,
    ) -> wasmtime::Result<Result<(), TreeError>> {
        Ok((|| {
            let (dir, name) = self.ctx.trees.parent(&path)?;
            // Most entries of a layer are root's with the mode a new file
            // gets: one stat saves the chown and the chmod then.
            let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| os("stat", &path, e))?;
            let symlink = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
            let chown = (st.st_uid, st.st_gid) != (a.uid, a.gid);
            if chown {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(a.uid)),
                    Some(rustix::fs::Gid::from_raw(a.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| os("chown", &path, e))?;
            }
            // chown clears setuid bits, so after one the mode is set even if
            // it looked right before.
            if !symlink && (chown || st.st_mode & 0o7777 != a.mode & 0o7777) {
                // chmod follows symlinks, so it goes through a descriptor of
                // the object itself (opened without following).
                let fd = self.ctx.trees.open(&path, OFlags::PATH)?;
                chmod_fd(&fd, a.mode).map_err(|e| os("chmod", &path, e))?;
            }
            if let Some(t) = &a.mtime {
                let times = Timestamps {
                    last_access: timestamp(t),
                    last_modification: timestamp(t),
                };
                rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| os("utimensat", &path, e))?;
            }
            Ok(())
        })())
    }

    fn symlink(&mut self, path: String, target: String) -> wasmtime::Result<Result<(), TreeError>> {
        Ok((|| {
            if target.is_empty() || target.len() > MAX_PATH || target.contains('\0') {
                return Err(TreeError::InvalidPath(format!("symlink target {target:?}")));
            }
            let (dir, name) = self.ctx.trees.parent(&path)?;
            rustix::fs::symlinkat(target.as_str(), &dir, name).map_err(|e| os("symlink", &path, e))
        })())
    }

    fn read_link(&mut self, path: String) -> wasmtime::Result<Result<String, TreeError>> {
        Ok((|| {
            let (dir, name) = self.ctx.trees.parent(&path)?;
            let target = rustix::fs::readlinkat(&dir, name, Vec::new())
                .map_err(|e| os("readlink", &path, e))?;
            target
                .into_string()
                .map_err(|_| TreeError::Io(format!("readlink {path}: target is not UTF-8")))
        })())
    }

    fn make_whiteout(&mut self, path: String) -> wasmtime::Result<Result<(), TreeError>> {
        Ok(self.make_node(&path, FileType::CharacterDevice))
    }

    fn make_fifo(&mut self, path: String) -> wasmtime::Result<Result<(), TreeError>> {
        Ok(self.make_node(&path, FileType::Fifo))
    }

    fn set_xattr(
        &mut self,
        path: String,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), TreeError>> {
        Ok((|| {
            let fd = open_for_xattrs(&self.ctx.trees, &path)?.ok_or_else(|| {
                TreeError::Unsupported(format!("setxattr {path}: only files and directories"))
            })?;
            rustix::fs::fsetxattr(&fd, name.as_str(), &value, XattrFlags::empty())
                .map_err(|e| os("setxattr", &path, e))
        })())
    }

    fn xattrs(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, TreeError>> {
        Ok((|| {
            let Some(fd) = open_for_xattrs(&self.ctx.trees, &path)? else {
                return Ok(Vec::new());
            };
            let mut list = vec![0u8; XATTR_BUFFER];
            let n = rustix::fs::flistxattr(&fd, &mut list[..])
                .map_err(|e| os("listxattr", &path, e))?;
            let mut out = Vec::new();
            for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
                let name = String::from_utf8_lossy(name).into_owned();
                let mut value = vec![0u8; XATTR_BUFFER];
                let len = rustix::fs::fgetxattr(&fd, name.as_str(), &mut value[..])
                    .map_err(|e| os("getxattr", &path, e))?;
                value.truncate(len);
                out.push((name, value));
            }
            out.sort();
            Ok(out)
        })())
    }

    fn stat(&mut self, path: String) -> wasmtime::Result<Result<Node, TreeError>> {
        Ok((|| {
            let (dir, name) = self.ctx.trees.parent(&path)?;
            let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| os("stat", &path, e))?;
            Ok(node(&st))
        })())
    }

    fn usage(&mut self, path: String) -> wasmtime::Result<Result<(u64, u64), TreeError>> {
        Ok((|| {
            check(&path)?;
            let dir = self
                .ctx
                .trees
                .open(&path, OFlags::RDONLY | OFlags::DIRECTORY)?;
            let st = rustix::fs::fstat(&dir).map_err(|e| os("stat", &path, e))?;
            let mut seen = HashSet::new();
            let mut total = (st.st_blocks as u64 * 512, 1);
            let home = Mount::of(&dir, &st).map_err(|e| os("usage", &path, e))?;
            walk_usage(dir, &home, &mut seen, &mut total).map_err(|e| os("usage", &path, e))?;
            Ok(total)
        })())
    }

    fn remove_tree(&mut self, path: String) -> wasmtime::Result<Result<bool, TreeError>> {
        Ok((|| {
            let (dir, name) = self.ctx.trees.parent(&path)?;
            let st = rustix::fs::fstat(&dir).map_err(|e| os("stat", &path, e))?;
            let home = Mount::of(dir.as_fd(), &st).map_err(|e| os("stat", &path, e))?;
            match remove_entry(dir.as_fd(), name.as_bytes(), &home) {
                Ok(()) => Ok(true),
                Err(Errno::NOENT) => Ok(false),
                Err(Errno::BUSY) => Err(TreeError::Io(format!(
                    "remove {path}: something is mounted in it (unmount it first)"
                ))),
                Err(e) => Err(os("remove", &path, e)),
            }
        })())
    }
}

impl CapabilitiesView<'_> {
    fn make_node(&self, path: &str, kind: FileType) -> Result<(), TreeError> {
        let (dir, name) = self.ctx.trees.parent(path)?;
        let (mode, dev) = match kind {
            FileType::Fifo => (Mode::from_raw_mode(0o600), 0),
            _ => (Mode::empty(), rustix::fs::makedev(0, 0)),
        };
        rustix::fs::mknodat(&dir, name, kind, mode, dev).map_err(|e| os("mknod", path, e))
    }
}

/// The mount a tree lives on: what it must not leave. Something mounted
/// inside it (a bind mount of a directory of the same filesystem
/// included, which has the same device) is another mount.
struct Mount {
    dev: u64,
    /// The mount's id, where the kernel tells it (Linux 5.8+).
    id: Option<u64>,
}

impl Mount {
    /// The mount of the open directory `dir` (whose `fstat` is `st`).
    fn of(dir: impl AsFd, st: &Stat) -> rustix::io::Result<Self> {
        Ok(Self {
            dev: st.st_dev,
            id: mount_id(dir.as_fd(), c"")?,
        })
    }

    /// Whether `name` in `dir` (whose `stat` is `st`) is where something
    /// else is mounted: another device, another mount id, or the root of a
    /// mount (`STATX_ATTR_MOUNT_ROOT`).
    fn left_at(&self, dir: BorrowedFd<'_>, name: &CStr, st: &Stat) -> rustix::io::Result<bool> {
        if st.st_dev != self.dev {
            return Ok(true);
        }
        let x = match rustix::fs::statx(dir, name, statx_flags(), StatxFlags::MNT_ID) {
            Ok(x) => x,
            Err(Errno::NOSYS) => return Ok(false), // no statx: the device it is
            Err(e) => return Err(e),
        };
        let root = x.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            && x.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
        let other = self
            .id
            .is_some_and(|id| x.stx_mask & StatxFlags::MNT_ID.bits() != 0 && x.stx_mnt_id != id);
        Ok(root || other)
    }
}

/// How `statx` looks at an entry: the entry itself, never an automount.
fn statx_flags() -> AtFlags {
    AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT
}

/// The mount id of `name` in `dir` (`dir` itself for an empty name), if
/// the kernel tells it.
fn mount_id(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<Option<u64>> {
    let flags = statx_flags()
        | if name.is_empty() {
            AtFlags::EMPTY_PATH
        } else {
            AtFlags::empty()
        };
    match rustix::fs::statx(dir, name, flags, StatxFlags::MNT_ID) {
        Ok(x) if x.stx_mask & StatxFlags::MNT_ID.bits() != 0 => Ok(Some(x.stx_mnt_id)),
        Ok(_) | Err(Errno::NOSYS) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds up the allocated bytes and objects under the open directory `dir`,
/// each inode once, not leaving the mount `home`.
fn walk_usage(
    dir: OwnedFd,
    home: &Mount,
    seen: &mut HashSet<u64>,
    total: &mut (u64, u64),
) -> rustix::io::Result<()> {
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if home.left_at(dir.as_fd(), name, &st)? || (st.st_nlink > 1 && !seen.insert(st.st_ino)) {
            continue;
        }
        total.0 += st.st_blocks as u64 * 512;
        total.1 += 1;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                Ok(child) => walk_usage(child, home, seen, total)?,
                // overlay's mode-000 work dir, for a caller that is not root.
                Err(Errno::ACCESS) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes `name` in `dir` and everything below it, making unreadable
/// directories readable first; `BUSY`, stopping there, at anything mounted
/// inside (a bind mount of the same filesystem included: removing through
/// it would delete what it shows). Names are bytes: what a directory
/// holds need not be UTF-8.
fn remove_entry(dir: BorrowedFd<'_>, name: &[u8], home: &Mount) -> rustix::io::Result<()> {
    let name = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
    let st = rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
    if home.left_at(dir, &name, &st)? {
        return Err(Errno::BUSY);
    }
    let name = name.as_bytes();
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            let path = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            chmod_fd(&rustix::fs::openat(dir, name, path, Mode::empty())?, 0o700)?;
            rustix::fs::openat(dir, name, flags, Mode::empty())?
        }
        other => other?,
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&child)? {
        let n = entry?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    for n in names {
        remove_entry(child.as_fd(), &n, home)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}
