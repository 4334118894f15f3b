//! The delta endpoints, beside `/v2/` under `/kist/v1/` (a node that holds
//! one version of an image pulls the next by fetching only what changed):
//!
//! - `GET /kist/v1/<name>/trees/<layer>`: the layer's tree
//!   (`application/vnd.kist.layer.tree.v1+gzip`), with `Kist-Diff-Id`;
//! - `GET /kist/v1/<name>/packs/<layer>?base=<layer>&base=...`: the files
//!   of the layer whose content none of the base layers has
//!   (`application/vnd.kist.layer.pack.v1+gzip`).
//!
//! Both need `pull` in the repository, which must hold every layer named;
//! both are blobs the store derives once and keeps, served with `Range`
//! so an interrupted download resumes. A node fetches both in parallel,
//! after the manifest and the config: three round trips in all. The
//! component decides; this only serves what it returned.

use axum::http::{HeaderMap, Method, header};
use axum::response::Response;

use super::errors::Reply;
use super::{Registry, blocking};
use crate::body;
use crate::client::Client;

/// Media types of what the endpoints serve.
const TREE: &str = "application/vnd.kist.layer.tree.v1+gzip";
const PACK: &str = "application/vnd.kist.layer.pack.v1+gzip";

/// What a request wants.
pub enum Wanted {
    Tree,
    /// The pack against these base layers.
    Pack(Vec<String>),
}

/// `GET` or `HEAD` of a layer's tree or pack, with `Range`.
pub async fn get(
    registry: &Registry,
    name: String,
    layer: String,
    wanted: Wanted,
    method: &Method,
    headers: &HeaderMap,
    client: &Client,
) -> Reply {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (store, server) = (registry.store.clone(), registry.server.clone());
    let (media_type, digest, diff_id, size, reader) = blocking::run(move || {
        let registry = store.registry();
        let (media_type, digest, diff_id, size) = match wanted {
            Wanted::Tree => {
                let t = registry.tree_of_layer(&name, &layer)?;
                (TREE, t.tree, Some(t.diff_id), t.size)
            }
            Wanted::Pack(bases) => {
                let (pack, size) = registry.layer_pack(&name, &layer, &bases)?;
                (PACK, pack, None, size)
            }
        };
        // The component gave this client the blob; the server's handle
        // reads it (it is held by `deltas`, not by the repository).
        let reader = server.reader(&digest)?;
        Ok((media_type, digest, diff_id, size, reader))
    })
    .await?;
    let mut response = Response::builder()
        .header("Docker-Content-Digest", &digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CONTENT_TYPE, media_type);
    if let Some(diff_id) = diff_id {
        response = response.header("Kist-Diff-Id", diff_id);
    }
    Ok(body::ranged(response, reader, size, range, method, client))
}
