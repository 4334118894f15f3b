//! Performing the mounts [`Snapshots`](crate::Snapshots) hands out (Linux,
//! as root): what containerd does with them, for the CLI's
//! `snapshot mount` and for embedders that run containers themselves.
//!
//! Overlay options longer than a page (a chain of ~100 layers with long
//! store paths) do not fit `mount(2)`; those go through the new mount API
//! (`fsopen`/`fsconfig`, one `lowerdir+` per layer, Linux 6.8+), which has
//! no such limit.

use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

pub use crate::bindings::exports::kist::content::snapshots::Mount;
use crate::error::{Error, Result};

/// Longest option string `mount(2)` takes.
const PAGE: usize = 4096;

fn failed(what: &str, target: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what} on {}: {e}", target.display()))
}

/// Mounts `mounts` on `target`, in order (kist gives one).
pub fn mount(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        match m.type_.as_str() {
            "bind" => bind(m, target)?,
            "overlay" => overlay(m, target)?,
            other => return Err(Error::InvalidArgument(format!("mount type {other:?}"))),
        }
    }
    Ok(())
}

/// Unmounts `target` (lazily if it is busy: a container's tree stays
/// usable by what still has it open).
pub fn unmount(target: &Path) -> Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty())
        .or_else(|e| match e {
            rustix::io::Errno::BUSY => rustix::mount::unmount(target, UnmountFlags::DETACH),
            other => Err(other),
        })
        .map_err(|e| failed("unmount", target, e))
}

fn bind(m: &Mount, target: &Path) -> Result<()> {
    if m.options.iter().any(|o| o == "rbind") {
        rustix::mount::mount_bind_recursive(m.source.as_str(), target)
    } else {
        rustix::mount::mount_bind(m.source.as_str(), target)
    }
    .map_err(|e| failed("bind mount", target, e))?;
    if m.options.iter().any(|o| o == "ro") {
        let ro = MountFlags::BIND | MountFlags::RDONLY;
        if let Err(e) = rustix::mount::mount_remount(target, ro, "") {
            let _ = unmount(target);
            return Err(failed("read-only remount", target, e));
        }
    }
    Ok(())
}

fn overlay(m: &Mount, target: &Path) -> Result<()> {
    let data = m.options.join(",");
    if data.len() < PAGE {
        let data = std::ffi::CString::new(data)
            .map_err(|_| Error::InvalidArgument("overlay options contain NUL".into()))?;
        return rustix::mount::mount(
            m.source.as_str(),
            target,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| failed("overlay mount", target, e));
    }
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| failed("fsopen overlay", target, e))?;
    let set = |key: &str, value: &str| {
        rustix::mount::fsconfig_set_string(&fs, key, value).map_err(|e| {
            failed(
                &format!("overlay option {key} (needs Linux 6.8+ for long chains)"),
                target,
                e,
            )
        })
    };
    set("source", &m.source)?;
    for option in &m.options {
        match option.split_once('=') {
            Some(("lowerdir", list)) => {
                for layer in list.split(':') {
                    set("lowerdir+", layer)?;
                }
            }
            Some((key, value)) => set(key, value)?,
            None => rustix::mount::fsconfig_set_flag(&fs, option.as_str())
                .map_err(|e| failed(&format!("overlay option {option}"), target, e))?,
        }
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| failed("overlay create", target, e))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| failed("fsmount", target, e))?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| failed("move_mount", target, e))
}
