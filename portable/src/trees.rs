//! `kist:content/trees` in pure wasm: what WASI 0.2 can do (symlinks with
//! relative targets, reading links, sizes, removing trees) is done; owners,
//! modes, whiteouts, fifos and extended attributes are `unsupported`, and
//! `stat` too, since WASI tells neither modes nor owners nor inode
//! numbers. Snapshots on this build hold files, directories and relative
//! symlinks; `apply` and `diff` need the native host.

use crate::Component;
use crate::bindings::exports::kist::content::trees::{Attributes, Guest, Node, TreeError};
use crate::bindings::wasi::filesystem::preopens;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

fn root() -> Result<Descriptor, TreeError> {
    preopens::get_directories()
        .into_iter()
        .next()
        .map(|(d, _)| d)
        .ok_or_else(|| TreeError::Io("no preopened directory".into()))
}

fn check(path: &str) -> Result<(), TreeError> {
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(TreeError::InvalidPath(format!("{path:?}")));
    }
    Ok(())
}

fn err(op: &str, path: &str, e: ErrorCode) -> TreeError {
    match e {
        ErrorCode::NoEntry => TreeError::NotFound,
        ErrorCode::Exist => TreeError::Exists,
        ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::Unsupported => {
            TreeError::Unsupported(format!("{op} {path}: {e:?} (kist-portable)"))
        }
        other => TreeError::Io(format!("{op} {path}: {other:?}")),
    }
}

fn unsupported<T>(what: &str) -> Result<T, TreeError> {
    Err(TreeError::Unsupported(format!(
        "{what}: WASI 0.2 cannot, and kist-portable has no native host"
    )))
}

/// Size and objects of the tree at `path` (sizes, not blocks: WASI has no
/// block counts; hard links are counted once per link).
fn walk(dir: &Descriptor, path: &str, total: &mut (u64, u64)) -> Result<(), TreeError> {
    let stat = dir
        .stat_at(PathFlags::empty(), path)
        .map_err(|e| err("stat", path, e))?;
    total.0 += stat.size;
    total.1 += 1;
    if stat.type_ != DescriptorType::Directory {
        return Ok(());
    }
    let (sub, names) = children(dir, path)?;
    for name in names {
        walk(&sub, &name, total)?;
    }
    Ok(())
}

/// The directory `path` in `dir`, opened, and the names in it.
fn children(dir: &Descriptor, path: &str) -> Result<(Descriptor, Vec<String>), TreeError> {
    let sub = dir
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ,
        )
        .map_err(|e| err("open", path, e))?;
    let entries = sub.read_directory().map_err(|e| err("read", path, e))?;
    let mut names = Vec::new();
    while let Some(entry) = entries
        .read_directory_entry()
        .map_err(|e| err("read", path, e))?
    {
        names.push(entry.name);
    }
    drop(entries);
    Ok((sub, names))
}

/// Removes `path` in `dir` and everything below it.
fn remove(dir: &Descriptor, path: &str) -> Result<(), TreeError> {
    let stat = dir
        .stat_at(PathFlags::empty(), path)
        .map_err(|e| err("stat", path, e))?;
    if stat.type_ != DescriptorType::Directory {
        return dir.unlink_file_at(path).map_err(|e| err("unlink", path, e));
    }
    let (sub, names) = children(dir, path)?;
    for name in names {
        remove(&sub, &name)?;
    }
    dir.remove_directory_at(path)
        .map_err(|e| err("rmdir", path, e))
}

impl Guest for Component {
    fn set_attributes(_path: String, _attributes: Attributes) -> Result<(), TreeError> {
        unsupported("set owner, mode and times")
    }

    fn symlink(path: String, target: String) -> Result<(), TreeError> {
        check(&path)?;
        root()?
            .symlink_at(&target, &path)
            .map_err(|e| err("symlink", &path, e))
    }

    fn read_link(path: String) -> Result<String, TreeError> {
        check(&path)?;
        root()?
            .readlink_at(&path)
            .map_err(|e| err("readlink", &path, e))
    }

    fn make_whiteout(_path: String) -> Result<(), TreeError> {
        unsupported("make a whiteout (a device node)")
    }

    fn make_fifo(_path: String) -> Result<(), TreeError> {
        unsupported("make a fifo")
    }

    fn set_xattr(_path: String, _name: String, _value: Vec<u8>) -> Result<(), TreeError> {
        unsupported("set an extended attribute")
    }

    fn xattrs(_path: String) -> Result<Vec<(String, Vec<u8>)>, TreeError> {
        unsupported("read extended attributes")
    }

    fn stat(_path: String) -> Result<Node, TreeError> {
        unsupported("stat with mode, owner and inode")
    }

    fn usage(path: String) -> Result<(u64, u64), TreeError> {
        check(&path)?;
        let mut total = (0, 0);
        walk(&root()?, &path, &mut total)?;
        Ok(total)
    }

    fn remove_tree(path: String) -> Result<bool, TreeError> {
        check(&path)?;
        match remove(&root()?, &path) {
            Err(TreeError::NotFound) => Ok(false),
            other => other.map(|()| true),
        }
    }
}
