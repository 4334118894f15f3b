//! Files read and parsed once per change, per instance: a file's
//! modification time and size stand for its version, and one `stat`
//! tells whether the parsed copy is still good.
//!
//! Every writer of such a file replaces it whole (`fs::write_atomic`), so
//! a new version is a new file with its own time.

use std::cell::RefCell;
use std::rc::Rc;

use crate::shared::error::Result;
use crate::shared::fs;

/// A file's version: modification time (seconds, nanoseconds) and size.
pub type Version = ((u64, u32), u64);

/// The version of the file at `path`, `None` if there is none.
pub fn version(path: &str) -> Result<Option<Version>> {
    Ok(fs::stat(path)?.map(|stat| {
        let time = stat
            .data_modification_timestamp
            .map_or((0, 0), |t| (t.seconds, t.nanoseconds));
        (time, stat.size)
    }))
}

/// The last parsed content of one file.
pub struct Cached<T>(RefCell<Option<(Version, Rc<T>)>>);

impl<T> Cached<T> {
    /// Nothing read yet.
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// The content of `path` as `parse` makes it (`None` if there is no
    /// such file), parsed again only when the file changed.
    pub fn get(&self, path: &str, parse: impl FnOnce(&[u8]) -> Result<T>) -> Result<Option<Rc<T>>> {
        let Some(version) = version(path)? else {
            self.0.replace(None);
            return Ok(None);
        };
        if let Some((v, value)) = &*self.0.borrow()
            && *v == version
        {
            return Ok(Some(Rc::clone(value)));
        }
        // Replaced between the stat and the read: the next call sees
        // another version and reads again.
        let bytes = fs::read_file(path)?.unwrap_or_default();
        let value = Rc::new(parse(&bytes)?);
        self.0.replace(Some((version, Rc::clone(&value))));
        Ok(Some(value))
    }
}
