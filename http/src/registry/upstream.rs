//! The upstream registry of a pull-through mirror, as a client of it:
//! `GET`/`HEAD` with the `Accept` types a registry serves, Basic or bearer
//! authentication with credentials only the host holds (the token dance:
//! a 401's `Bearer` challenge sends it to the realm for a token), and
//! redirects followed one hop at a time, each to an allowed origin only
//! (Docker Hub sends blobs from a CDN: allow it with `--mirror-allow`).
//! ureq, blocking, on tokio's blocking pool: what the host's `fetch`
//! capability uses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// The manifest media types a mirror (and `kist pull`) asks for, in order
/// of preference.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to reach the upstream.
pub struct Upstream {
    /// `scheme://host[:port]`, without a trailing slash.
    base: String,
    /// Origins requests may go to: the upstream's, and those allowed
    /// besides (token realms, blob CDNs).
    origins: Vec<String>,
    /// User and password for the upstream or its token realm.
    credentials: Option<(String, String)>,
    agent: ureq::Agent,
    /// Bearer tokens by scope, reused until the upstream refuses one.
    tokens: Mutex<HashMap<String, String>>,
}

/// Why a request to the upstream did not succeed.
#[derive(Debug)]
pub enum Failed {
    /// It answered with this status (404: it does not have it).
    Status(u16),
    /// It could not be reached, or the answer broke off.
    Unreachable(String),
    /// A redirect to an origin that is not allowed.
    NotAllowed(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Status(s) => write!(f, "the upstream answered {s}"),
            Failed::Unreachable(m) => write!(f, "the upstream is unreachable: {m}"),
            Failed::NotAllowed(m) => write!(f, "{m}"),
        }
    }
}

/// `scheme://host:port` of `url` (port explicit).
fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl Upstream {
    /// The upstream at `base` (`https://registry-1.docker.io`), also
    /// allowed to send the client to `allowed` origins.
    pub fn new(
        base: &str,
        allowed: &[String],
        credentials: Option<(String, String)>,
    ) -> Result<Self, String> {
        let parse = |s: &str| {
            let url = Url::parse(s).map_err(|e| format!("{s}: {e}"))?;
            match url.scheme() {
                "http" | "https" if url.host_str().is_some() => Ok(url),
                _ => Err(format!(
                    "{s}: an upstream is http:// or https:// with a host"
                )),
            }
        };
        let upstream = parse(base)?;
        let mut origins = vec![origin_of(&upstream)];
        for origin in allowed {
            origins.push(origin_of(&parse(origin)?));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            origins,
            credentials,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(30))
                .redirects(0)
                .build(),
            tokens: Mutex::default(),
        })
    }

    /// The upstream's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method` (`GET` or `HEAD`) of `/v2/<path>` on the upstream,
    /// accepting `accept`, from byte `offset` on; authenticates when
    /// challenged. A 200 or 206 response, or why not.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        accept: &[&str],
        offset: u64,
    ) -> Result<ureq::Response, Failed> {
        self.request_under("/v2/", method, path, accept, offset)
    }

    /// [`request`](Self::request) of `/kist/v1/<path>`: a kist registry's
    /// delta endpoints (`<name>/trees/<layer>`, `<name>/packs/<layer>`).
    pub fn request_delta(&self, path: &str, offset: u64) -> Result<ureq::Response, Failed> {
        self.request_under("/kist/v1/", "GET", path, &[], offset)
    }

    fn request_under(
        &self,
        prefix: &str,
        method: &str,
        path: &str,
        accept: &[&str],
        offset: u64,
    ) -> Result<ureq::Response, Failed> {
        let url = format!("{}{prefix}{path}", self.base);
        let scope = scope_of(path);
        let mut authorization = self.tokens.lock().expect("tokens").get(&scope).cloned();
        for _ in 0..2 {
            match self.follow(method, &url, accept, offset, authorization.as_deref()) {
                Err(Challenged(challenge)) => {
                    authorization = Some(self.authenticate(&challenge, &scope)?);
                }
                Ok(result) => return result,
            }
        }
        Err(Failed::Status(401))
    }

    /// One request and its redirects: `Err` with the challenge on a 401.
    fn follow(
        &self,
        method: &str,
        url: &str,
        accept: &[&str],
        offset: u64,
        authorization: Option<&str>,
    ) -> Result<Result<ureq::Response, Failed>, Challenged> {
        let mut url = match self.allowed(url) {
            Ok(url) => url,
            Err(e) => return Ok(Err(e)),
        };
        for hop in 0..=MAX_REDIRECTS {
            let mut request = self.agent.request_url(method, &url);
            if !accept.is_empty() {
                request = request.set("Accept", &accept.join(", "));
            }
            if offset > 0 {
                request = request.set("Range", &format!("bytes={offset}-"));
            }
            // Credentials go to the upstream only, never to where it
            // redirects (a CDN's signed URL carries its own).
            if let Some(value) = authorization.filter(|_| hop == 0) {
                request = request.set("Authorization", value);
            }
            let response = match request.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(401, r)) if hop == 0 => {
                    return Err(Challenged(
                        r.header("www-authenticate").unwrap_or_default().to_owned(),
                    ));
                }
                Err(ureq::Error::Status(code, _)) => return Ok(Err(Failed::Status(code))),
                Err(ureq::Error::Transport(t)) => {
                    return Ok(Err(Failed::Unreachable(t.to_string())));
                }
            };
            if (300..400).contains(&response.status()) {
                let Some(next) = response.header("location").and_then(|l| url.join(l).ok()) else {
                    return Ok(Err(Failed::Unreachable(format!(
                        "{url}: a redirect without a location"
                    ))));
                };
                url = match self.allowed(next.as_str()) {
                    Ok(url) => url,
                    Err(e) => return Ok(Err(e)),
                };
                continue;
            }
            return Ok(Ok(response));
        }
        Ok(Err(Failed::Unreachable(format!(
            "{url}: more than {MAX_REDIRECTS} redirects"
        ))))
    }

    /// `url` parsed, if its origin is allowed.
    fn allowed(&self, url: &str) -> Result<Url, Failed> {
        let parsed = Url::parse(url).map_err(|e| Failed::NotAllowed(format!("{url}: {e}")))?;
        let origin = origin_of(&parsed);
        if self.origins.contains(&origin) {
            Ok(parsed)
        } else {
            Err(Failed::NotAllowed(format!(
                "the upstream sent the mirror to {origin}, which is not allowed (--mirror-allow)"
            )))
        }
    }

    /// The `Authorization` value that answers `challenge` for `scope`:
    /// Basic credentials, or a token from the challenge's realm.
    fn authenticate(&self, challenge: &str, scope: &str) -> Result<String, Failed> {
        let basic = self.credentials.as_ref().map(|(user, password)| {
            use base64::Engine;
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return basic.ok_or(Failed::Status(401));
        };
        let params = parameters(params);
        let realm = params.get("realm").ok_or(Failed::Status(401))?;
        let mut url = self.allowed(realm)?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", params.get("scope").map_or(scope, String::as_str));
        }
        let mut request = self.agent.request_url("GET", &url);
        if let Some(basic) = &basic {
            request = request.set("Authorization", basic);
        }
        let answer: serde_json::Value = match request.call() {
            Ok(r) => r
                .into_json()
                .map_err(|e| Failed::Unreachable(e.to_string()))?,
            Err(ureq::Error::Status(code, _)) => return Err(Failed::Status(code)),
            Err(ureq::Error::Transport(t)) => return Err(Failed::Unreachable(t.to_string())),
        };
        let token = answer["token"]
            .as_str()
            .or(answer["access_token"].as_str())
            .ok_or_else(|| Failed::Unreachable(format!("{realm} answered no token")))?;
        let value = format!("Bearer {token}");
        self.tokens
            .lock()
            .expect("tokens")
            .insert(scope.to_owned(), value.clone());
        Ok(value)
    }
}

/// A 401 and its `WWW-Authenticate` value.
struct Challenged(String);

/// The token scope for `/v2/<path>` or `/kist/v1/<path>`: pull from its
/// repository.
fn scope_of(path: &str) -> String {
    let name = ["/manifests/", "/blobs/", "/trees/", "/packs/"]
        .iter()
        .find_map(|m| path.split_once(m).map(|(name, _)| name))
        .unwrap_or(path);
    format!("repository:{name}:pull")
}

/// `key="value",key=value` of a challenge.
fn parameters(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    out
}
