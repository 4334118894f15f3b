//! The OCI registry (distribution-spec v1.1) under `/v2/`: this module
//! speaks HTTP; what is stored, and whether it may be, is decided by the
//! store component's `registry` interface.

mod auth;
mod blobs;
mod blocking;
mod deltas;
mod errors;
mod htpasswd;
mod listings;
mod manifests;
mod mirror;
mod paths;
mod policy;
mod tapped;
mod token;
mod upload_body;
mod uploads;
mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use kist::Store;
use kist_admission::Transfer;

pub use auth::Access;
use errors::{Failure, Reply};
pub use htpasswd::Htpasswd;
pub use mirror::Mirror;
use paths::Endpoint;
pub use policy::PolicyFile;
pub use token::Tokens;
pub use upstream::{Failed as UpstreamFailed, MANIFEST_TYPES, Upstream};

/// What an upload's body holds in memory: the piece filling from the
/// network and the one being written (see `upload_body`).
const UPLOAD_MEMORY: u64 = 2 << 20;

/// What the registry's handlers share.
#[derive(Clone)]
struct Registry {
    /// The store as the client may use it (the server's, until the
    /// client is known).
    store: Store,
    /// The server's own handle: what the mirror stores with.
    server: Store,
    access: Arc<Access>,
    mirror: Option<Arc<Mirror>>,
}

/// A request's query parameters, decoded, in order.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        let pairs = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes());
        Self(pairs.into_owned().collect())
    }

    /// The value of `key`, the last if it is given more than once.
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Every value of `key`, in order (`?tag=a&tag=b`).
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The delta endpoints' prefix (see `deltas`).
const DELTAS: &str = "/kist/v1/";

/// The route template of a `/v2` or `/kist/v1/` path, for metrics and the
/// access log; `None` if `path` is under neither.
pub(crate) fn route_of(path: &str) -> Option<&'static str> {
    if let Some(rest) = path.strip_prefix(DELTAS) {
        return Some(paths::delta_endpoint(rest).map_or("/kist/v1/{unknown}", |e| e.route()));
    }
    let rest = path.strip_prefix("/v2")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(paths::endpoint(rest).map_or("/v2/{unknown}", |e| e.route()))
}

/// The registry routes over `store` with `access`, mirroring an upstream
/// with `mirror`.
pub fn routes(store: Store, access: Arc<Access>, mirror: Option<Arc<Mirror>>) -> Router {
    let registry = Registry {
        server: store.clone(),
        store,
        access,
        mirror,
    };
    Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .route("/kist/v1/{*rest}", any(handle))
        .with_state(registry)
}

async fn handle(
    State(registry): State<Registry>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    client: crate::client::Client,
    body: Body,
) -> Response {
    let endpoint = match uri.path().strip_prefix(DELTAS) {
        Some(rest) => paths::delta_endpoint(rest),
        None => {
            let rest = uri.path().strip_prefix("/v2").unwrap_or_default();
            paths::endpoint(rest.strip_prefix('/').unwrap_or(rest))
        }
    };
    let query = Query::parse(&uri);
    let scope = endpoint
        .as_ref()
        .and_then(|e| scope(e, &method, query.get("from").as_deref()));
    let admitted = registry
        .access
        .admit(&registry.store, &headers, scope.as_deref())
        .await;
    let user = match admitted {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    let Some(endpoint) = endpoint else {
        return Failure::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint")
            .into_response();
    };
    let as_client = Registry {
        store: user.store.clone(),
        ..registry.clone()
    };
    let reply = route(
        &as_client, endpoint, &method, &query, &headers, &client, body,
    )
    .await
    .map_err(|failure| match failure.is_forbidden() {
        true => user.refused(&registry.access, failure, scope.as_deref()),
        false => failure,
    });
    let mut response = reply.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    if let Some(user) = user.user {
        response.extensions_mut().insert(crate::observe::User(user));
    }
    response
}

/// The token scope a request to `endpoint` with `method` needs (the
/// distribution token spec's `scope` parameter; space-separated when a
/// mount also reads `from`): what a challenge asks the client to get.
fn scope(endpoint: &Endpoint, method: &Method, from: Option<&str>) -> Option<String> {
    let name = match endpoint {
        Endpoint::Base => return None,
        Endpoint::Catalog => return Some("registry:catalog:*".to_owned()),
        Endpoint::Blob { name, .. }
        | Endpoint::Uploads { name }
        | Endpoint::Upload { name, .. }
        | Endpoint::Manifest { name, .. }
        | Endpoint::Tags { name }
        | Endpoint::Referrers { name, .. }
        | Endpoint::Tree { name, .. }
        | Endpoint::Pack { name, .. } => name,
    };
    let actions = match *method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE if !matches!(endpoint, Endpoint::Upload { .. }) => "delete",
        _ => "pull,push",
    };
    let mut scope = format!("repository:{name}:{actions}");
    if let (Endpoint::Uploads { .. }, Some(from)) = (endpoint, from) {
        scope.push_str(&format!(" repository:{from}:pull"));
    }
    Some(scope)
}

/// A response with `status` and no body.
fn empty(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("valid response")
}

/// The allowed methods of an endpoint, as a 405.
fn not_allowed(allow: &'static str) -> Reply {
    Err(Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "method not allowed",
    )
    .with_header(header::ALLOW, allow.into()))
}

async fn route(
    registry: &Registry,
    endpoint: Endpoint,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    client: &crate::client::Client,
    body: Body,
) -> Reply {
    let m = method.as_str();
    if let Some(mirror) = registry.mirror.as_ref().filter(|m| !m.allow_push)
        && !matches!(m, "GET" | "HEAD")
    {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!(
                "this registry is a pull-through mirror of {}: it takes no pushes or deletes",
                mirror.upstream()
            ),
        )
        .with_header(header::ALLOW, "GET, HEAD".into()));
    }
    match endpoint {
        Endpoint::Base => match m {
            "GET" | "HEAD" => Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("valid response")),
            _ => not_allowed("GET, HEAD"),
        },
        Endpoint::Catalog => match m {
            "GET" => listings::catalog(registry, query, client).await,
            _ => not_allowed("GET"),
        },
        Endpoint::Blob { name, digest } => match m {
            "GET" | "HEAD" => blobs::get(registry, name, digest, method, headers, client).await,
            "DELETE" => blobs::delete(registry, name, digest).await,
            _ => not_allowed("GET, HEAD, DELETE"),
        },
        Endpoint::Uploads { name } => match m {
            "POST" => {
                let _transfer = admit(client, UPLOAD_MEMORY)?;
                uploads::start(registry, name, query, headers, body).await
            }
            _ => not_allowed("POST"),
        },
        Endpoint::Upload { name, id } => match m {
            "GET" => uploads::status(registry, name, id).await,
            "PATCH" => {
                let _transfer = admit(client, UPLOAD_MEMORY)?;
                uploads::patch(registry, name, id, headers, body).await
            }
            "PUT" => {
                let _transfer = admit(client, UPLOAD_MEMORY)?;
                uploads::put(registry, name, id, query, headers, body).await
            }
            "DELETE" => uploads::cancel(registry, name, id).await,
            _ => not_allowed("GET, PATCH, PUT, DELETE"),
        },
        Endpoint::Manifest { name, reference } => match m {
            "GET" | "HEAD" => manifests::get(registry, name, reference, method, client).await,
            "PUT" => {
                let tags = query.all("tag");
                let pushed = manifests::Pushed {
                    name,
                    reference,
                    tags,
                };
                manifests::put(registry, pushed, headers, body, client).await
            }
            "DELETE" => manifests::delete(registry, name, reference).await,
            _ => not_allowed("GET, HEAD, PUT, DELETE"),
        },
        Endpoint::Tags { name } => match m {
            "GET" => listings::tags(registry, name, query, client).await,
            _ => not_allowed("GET"),
        },
        Endpoint::Referrers { name, digest } => match m {
            "GET" => listings::referrers(registry, name, digest, query, client).await,
            _ => not_allowed("GET"),
        },
        Endpoint::Tree { name, digest } => match m {
            "GET" | "HEAD" => {
                let wanted = deltas::Wanted::Tree;
                deltas::get(registry, name, digest, wanted, method, headers, client).await
            }
            _ => not_allowed("GET, HEAD"),
        },
        Endpoint::Pack { name, digest } => match m {
            "GET" | "HEAD" => {
                let wanted = deltas::Wanted::Pack(query.all("base"));
                deltas::get(registry, name, digest, wanted, method, headers, client).await
            }
            _ => not_allowed("GET, HEAD"),
        },
    }
}

/// Admits a body of `client` holding `memory` bytes, or 429 (the spec's
/// `TOOMANYREQUESTS`) with what it has too much of.
fn admit(client: &crate::client::Client, memory: u64) -> Result<Option<Transfer>, Failure> {
    client.transfer(memory).map_err(too_many)
}

/// 429 (the spec's `TOOMANYREQUESTS`) for a refused transfer, saying what
/// the client has too much of.
fn too_many(refused: kist_admission::Refused) -> Failure {
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOOMANYREQUESTS",
        refused.to_string(),
    )
    .with_header(header::RETRY_AFTER, "1".into())
}
