//! Who may use the registry: Basic authentication against an htpasswd
//! file of bcrypt entries (as distribution's `htpasswd` auth), optionally
//! with anonymous reads. bcrypt is slow on purpose (~50–250 ms a check),
//! so a credential that checked out is remembered by its SHA-256 and not
//! checked again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::errors::Failure;

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
    fn check(&self, user: &str, password: &str) -> bool {
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

/// The registry's access rule.
#[derive(Default)]
pub struct Access {
    /// Users who may push and pull; `None`: everyone may (no auth).
    pub htpasswd: Option<Htpasswd>,
    /// With `htpasswd`: reads (`GET`, `HEAD`) need no credentials.
    pub anonymous_pull: bool,
}

impl Access {
    /// Reads the htpasswd file again, if there is one (see
    /// [`Htpasswd::reload`]).
    pub fn reload(&self) -> std::io::Result<()> {
        self.htpasswd.as_ref().map_or(Ok(()), Htpasswd::reload)
    }

    /// `Ok` with the user who authenticated (`None`: anonymous) if the
    /// request may go on; a 401 with `WWW-Authenticate` otherwise. The
    /// check runs on the blocking pool (bcrypt).
    pub async fn allow(
        self: &std::sync::Arc<Self>,
        read: bool,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Failure> {
        let Some(_) = &self.htpasswd else {
            return Ok(None);
        };
        if read && self.anonymous_pull {
            return Ok(None);
        }
        let credentials = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let this = std::sync::Arc::clone(self);
        let user = match credentials {
            Some(c) => tokio::task::spawn_blocking(move || {
                let (user, password) = c.split_once(':').unwrap_or((&c, ""));
                let ok = this
                    .htpasswd
                    .as_ref()
                    .is_some_and(|h| h.check(user, password));
                ok.then(|| user.to_owned())
            })
            .await
            .unwrap_or(None),
            None => None,
        };
        if user.is_some() {
            return Ok(user);
        }
        Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        )
        .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"kist\"".into()))
    }
}
