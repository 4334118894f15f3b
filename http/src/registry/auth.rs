//! Who may use the registry: Basic authentication against an htpasswd
//! file of bcrypt entries (as distribution's `htpasswd` auth), optionally
//! with anonymous reads. bcrypt is slow on purpose (~50–250 ms a check),
//! so a credential that checked out is remembered by its SHA-256 and not
//! checked again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::errors::Failure;

/// The users of an htpasswd file.
pub struct Htpasswd {
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    /// SHA-256 of `user:password` pairs that checked out.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Reads `path`: `user:$2y$...` lines (bcrypt only; `htpasswd -B`).
    pub fn load(path: &Path) -> std::io::Result<Self> {
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
        Ok(Self {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether `user` with `password` is allowed (runs bcrypt at most
    /// once per credential).
    fn check(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}")).into();
        if self.verified.lock().expect("auth cache").contains(&key) {
            return true;
        }
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok {
            self.verified.lock().expect("auth cache").insert(key);
        }
        ok
    }
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
