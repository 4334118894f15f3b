//! A node's disk for benchmarks that create many files: a fresh ext4
//! (with its journal, as `mkfs.ext4` makes it) in a sparse image, mounted
//! on a loop device for the run and unmounted and deleted after.
//!
//! Why not the work directory: this VM's root filesystem is an ext4
//! without a journal, where the inode allocator checks the inode table of
//! every recently deleted inode before reusing it (`recently_deleted` in
//! `fs/ext4/ialloc.c`). After a few pulls deleted, creating a layer's
//! 8,000 files took 3–5 s of kernel time there (perf: `find_inode_bit`,
//! `recently_deleted`, `find_get_block_common`) against 0.8 s on a fresh
//! journaled ext4, for kist and for every contender alike. A node's disk
//! is a journaled filesystem; measuring there keeps what kist does apart
//! from what this VM's disk did before.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::ensure;

use crate::tools::sh;

/// Size of the sparse image: room for a dozen unpacked Debian images.
const SIZE: &str = "16G";

/// A mounted node disk; unmounted and deleted when dropped.
pub struct NodeDisk {
    image: PathBuf,
    /// Where it is mounted.
    pub path: PathBuf,
}

impl NodeDisk {
    /// Makes and mounts a node disk under `work` (root only).
    pub fn mount(work: &Path) -> anyhow::Result<Self> {
        ensure!(
            crate::running_as_root(),
            "a node disk needs root (mkfs.ext4, mount -o loop)"
        );
        let image = work.join("node-disk.img");
        let path = work.join("node-disk");
        std::fs::create_dir_all(&path)?;
        sh(
            &format!(
                "truncate -s {SIZE} {i} && mkfs.ext4 -q -F {i} && mount -o loop {i} {p}",
                i = image.display(),
                p = path.display()
            ),
            work,
        )?;
        Ok(Self { image, path })
    }
}

impl Drop for NodeDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status();
        if unmounted.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_file(&self.image);
        } else {
            eprintln!("could not unmount {}", self.path.display());
        }
    }
}
