//! Basic authentication against an htpasswd file of bcrypt entries (as
//! distribution's `htpasswd` auth). bcrypt is slow on purpose (~50–250 ms
//! a check), so a credential that checked out is remembered by its SHA-256
//! and not checked again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};

/// The users of an htpasswd file, read again by [`reload`](Self::reload).
pub struct Htpasswd {
    path: PathBuf,
    /// User → bcrypt hash.
    users: RwLock<HashMap<String, String>>,
    /// SHA-256 of `user:password` pairs that checked out, and the count
    /// of reloads they were checked after (a check that a reload overtook
    /// is not remembered).
    verified: Mutex<(u64, HashSet<[u8; 32]>)>,
}

impl Htpasswd {
    /// Reads `path`: `user:$2y$...` lines (bcrypt only; `htpasswd -B`).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            users: RwLock::new(read(path)?),
            verified: Mutex::default(),
        })
    }

    /// Reads the file again (after SIGHUP): its users replace the ones
    /// before, and credentials checked before are checked again. A file
    /// that does not read or parse leaves the users as they were.
    pub fn reload(&self) -> std::io::Result<()> {
        let users = read(&self.path)?;
        *self.users.write().expect("htpasswd lock") = users;
        let mut verified = self.verified.lock().expect("auth cache");
        verified.0 += 1;
        verified.1.clear();
        Ok(())
    }

    /// Whether `user` with `password` is allowed (runs bcrypt at most
    /// once per credential).
    pub fn check(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}")).into();
        let reloads = {
            let verified = self.verified.lock().expect("auth cache");
            if verified.1.contains(&key) {
                return true;
            }
            verified.0
        };
        let hash = self.users.read().expect("htpasswd lock").get(user).cloned();
        let ok = hash.is_some_and(|hash| bcrypt::verify(password, &hash).unwrap_or(false));
        let mut verified = self.verified.lock().expect("auth cache");
        if ok && verified.0 == reloads {
            verified.1.insert(key);
        }
        ok
    }
}

/// The users of the htpasswd file at `path`.
fn read(path: &Path) -> std::io::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(std::io::Error::other(format!(
                "{}:{}: no `user:hash`",
                path.display(),
                n + 1
            )));
        };
        if !hash.starts_with("$2") {
            return Err(std::io::Error::other(format!(
                "{}:{}: only bcrypt entries are accepted (htpasswd -B)",
                path.display(),
                n + 1
            )));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}
