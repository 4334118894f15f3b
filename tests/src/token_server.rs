//! A token server as the distribution token spec describes one (what
//! Harbor's or GitLab's is to their registries), for the bearer-auth tests:
//! `GET /token?service=..&scope=..` with Basic credentials answers a JWT
//! granting the scopes asked for, as far as the user may: `pusher` gets
//! every action asked for, `reader` only `pull`, a client without
//! credentials nothing; a wrong password is a 401.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The `iss` its tokens carry.
pub const ISSUER: &str = "kist-test-issuer";
/// The `service` (and `aud`) of the registry it serves.
pub const SERVICE: &str = "kist-test";

/// A running token server; it stops with the test process.
pub struct TokenServer {
    /// `http://127.0.0.1:<port>/token`: the realm to configure.
    pub realm: String,
    /// Tokens issued so far.
    pub issued: Arc<AtomicUsize>,
}

/// A signing key and the algorithm it signs with.
#[derive(Clone)]
pub struct Signer {
    /// The private key.
    pub key: EncodingKey,
    /// RS256 or ES256.
    pub algorithm: Algorithm,
}

impl Signer {
    /// A JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key).unwrap()
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a token for `sub` granting `access`
/// (`[{"type":"repository","name":..,"actions":[..]}]`), valid now.
pub fn claims(sub: &str, access: Value) -> Value {
    json!({
        "iss": ISSUER, "sub": sub, "aud": SERVICE,
        "exp": now() + 300, "nbf": now() - 10, "iat": now(),
        "jti": format!("{}-{}", sub, now()),
        "access": access,
    })
}

impl TokenServer {
    /// Starts a token server signing with `signer`.
    pub fn start(signer: Signer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let (mut user, mut refused) = (None, false);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        user = basic_user(value.trim());
                        refused = user.is_none();
                    }
                }
                if refused {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                }
                let target = line.split(' ').nth(1).unwrap_or_default();
                let query = target.split_once('?').map_or("", |(_, q)| q);
                let token = signer.sign(&claims(
                    user.as_deref().unwrap_or(""),
                    access(user.as_deref(), query),
                ));
                count.fetch_add(1, Ordering::SeqCst);
                let body =
                    json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { realm, issued }
    }
}

/// The user of Basic credentials whose password is `pw-<user>`.
fn basic_user(authorization: &str) -> Option<String> {
    use base64::Engine;
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (password == format!("pw-{user}")).then(|| user.to_owned())
}

/// The `access` claim for `user` asking `query`'s scopes
/// (`repository:<name>:<actions>`).
fn access(user: Option<&str>, query: &str) -> Value {
    let mut granted = Vec::new();
    for (key, scope) in form_urlencoded::parse(query.as_bytes()) {
        if key != "scope" {
            continue;
        }
        for one in scope.split(' ') {
            let parts: Vec<&str> = one.split(':').collect();
            let [kind, name, actions] = parts[..] else {
                continue;
            };
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| match user {
                    Some("pusher") => true,
                    Some("reader") => *a == "pull",
                    _ => false,
                })
                .collect();
            granted.push(json!({"type": kind, "name": name, "actions": actions}));
        }
    }
    Value::Array(granted)
}
