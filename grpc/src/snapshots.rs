//! containerd's Snapshots service over kist's snapshots, confined to the
//! `containerd` holder: what arrives through the socket is held by it, and
//! the component lists, shows and changes only what it holds (its parents
//! are seen, not changed): containerd's garbage collector removes every
//! snapshot it lists and does not know.

use std::collections::HashMap;
use std::pin::Pin;

use crate::api::containerd::services::snapshots::v1::*;
use crate::api::containerd::types::Mount;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::errors::blocking;
use crate::{HOLDER, timestamp};

/// The service.
#[derive(Clone)]
pub struct Service {
    store: kist::Store,
}

impl Service {
    /// Serves the snapshots of `store`, confined to the `containerd` holder.
    pub fn new(store: &kist::Store) -> Self {
        Self {
            store: store.confined_to(HOLDER),
        }
    }

    fn snapshots(&self) -> kist::Snapshots {
        self.store.snapshots()
    }
}

fn mounts(mounts: Vec<kist::mount::Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            r#type: m.type_,
            source: m.source,
            options: m.options,
            ..Default::default()
        })
        .collect()
}

fn labels(labels: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut l: Vec<_> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    l.sort();
    l
}

fn pairs(labels: &[(String, String)]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn info(i: kist::SnapshotInfo) -> Info {
    Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: match i.kind {
            kist::SnapshotKind::View => Kind::View,
            kist::SnapshotKind::Active => Kind::Active,
            kist::SnapshotKind::Committed => Kind::Committed,
        } as i32,
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        labels: i.labels.into_iter().map(|l| (l.key, l.value)).collect(),
    }
}

fn parent(p: String) -> Option<String> {
    (!p.is_empty()).then_some(p)
}

type InfoStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl snapshots_server::Snapshots for Service {
    async fn prepare(
        &self,
        r: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let m = blocking(move || {
            s.prepare(
                &r.key,
                parent(r.parent).as_deref(),
                &pairs(&labels(&r.labels)),
            )
        })
        .await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts: mounts(m) }))
    }

    async fn view(
        &self,
        r: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let m = blocking(move || {
            s.view(
                &r.key,
                parent(r.parent).as_deref(),
                &pairs(&labels(&r.labels)),
            )
        })
        .await?;
        Ok(Response::new(ViewSnapshotResponse { mounts: mounts(m) }))
    }

    async fn mounts(&self, r: Request<MountsRequest>) -> Result<Response<MountsResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let m = blocking(move || s.mounts(&r.key)).await?;
        Ok(Response::new(MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(&self, r: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        blocking(move || s.commit(&r.name, &r.key, &pairs(&labels(&r.labels)))).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, r: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        blocking(move || s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        r: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let i = blocking(move || s.stat(&r.key)).await?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    async fn update(
        &self,
        r: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let given = r.info.ok_or_else(|| Status::invalid_argument("no info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let i = blocking(move || {
            let mut current = s.stat(&given.name)?;
            current.labels = labels(&given.labels)
                .into_iter()
                .map(|(key, value)| kist::Label { key, value })
                .collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            s.update(&current, &paths)
        })
        .await?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    type ListStream = InfoStream;

    async fn list(
        &self,
        r: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let filters = r.filters;
        let infos = blocking(move || {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            s.walk(&filters)
        })
        .await?;
        let batches: Vec<Result<ListSnapshotsResponse, Status>> = infos
            .chunks(100)
            .map(|c| {
                Ok(ListSnapshotsResponse {
                    info: c.iter().cloned().map(info).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, r: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let (s, r) = (self.snapshots(), r.into_inner());
        let u = blocking(move || s.usage(&r.key)).await?;
        Ok(Response::new(UsageResponse {
            size: u.size as i64,
            inodes: u.inodes as i64,
        }))
    }

    async fn cleanup(&self, _: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        let s = self.snapshots();
        blocking(move || s.cleanup()).await?;
        Ok(Response::new(()))
    }
}
