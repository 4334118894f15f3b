//! [`register`]: an image whose snapshots a kist store made (`kist pull`)
//! recorded in containerd, through containerd's own API on its socket, so
//! that `ctr run` starts it without containerd fetching or unpacking a
//! layer. What `ctr-starlight` does for Starlight, with containerd's
//! remote-snapshot path:
//!
//! 1. for each layer's chain id, a `Prepare` with the label
//!    `containerd.io/snapshot.ref=<chain id>` on the `kist` snapshotter:
//!    kist answers `already-exists` for the committed snapshot it holds
//!    under that label, and containerd records it as that chain's;
//! 2. the config and the manifest written into containerd's content store
//!    (both kist's through the proxy, but containerd must record them in
//!    its namespace), with the labels containerd's own pull sets: the
//!    manifest references the config and the layers, the config the top
//!    snapshot, so containerd's collector keeps them;
//! 3. the image record naming the manifest.
//!
//! A lease holds everything while it is being recorded.

use std::collections::HashMap;
use std::path::Path;

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::SNAPSHOT_REF;
use crate::api::containerd::services::content::v1::content_client::ContentClient;
use crate::api::containerd::services::content::v1::{WriteAction, WriteContentRequest};
use crate::api::containerd::services::images::v1::images_client::ImagesClient;
use crate::api::containerd::services::images::v1::{CreateImageRequest, Image, UpdateImageRequest};
use crate::api::containerd::services::leases::v1::leases_client::LeasesClient;
use crate::api::containerd::services::leases::v1::{CreateRequest, DeleteRequest};
use crate::api::containerd::services::snapshots::v1::snapshots_client::SnapshotsClient;
use crate::api::containerd::services::snapshots::v1::{
    PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use crate::api::containerd::types::Descriptor;

/// What containerd is told about one image.
pub struct ImageRecord<'a> {
    /// The image's name (`registry/name:tag`).
    pub name: &'a str,
    /// The manifest: its media type, digest and bytes.
    pub manifest: (&'a str, &'a str, &'a [u8]),
    /// The config: its digest and bytes.
    pub config: (&'a str, &'a [u8]),
    /// The layers' digests, bottom first.
    pub layers: &'a [String],
    /// The layers' chain ids, bottom first: kist holds a committed
    /// snapshot labelled `containerd.io/snapshot.ref` with each.
    pub chains: &'a [String],
}

/// Records `image` in the containerd listening on `socket`, in
/// `namespace`, its snapshots in the proxy snapshotter `snapshotter`.
pub async fn register(
    socket: &Path,
    namespace: &str,
    snapshotter: &str,
    image: &ImageRecord<'_>,
) -> Result<(), tonic::Status> {
    let channel = connect(socket).await?;
    let lease_id = format!("kist-pull-{}", std::process::id());
    let mut leases = LeasesClient::new(channel.clone());
    let scoped = Scope {
        namespace,
        lease: &lease_id,
    };
    let lease = CreateRequest {
        id: lease_id.clone(),
        labels: HashMap::from([("containerd.io/gc.expire".to_owned(), expiry())]),
    };
    leases.create(scoped.plain(lease)).await?;
    let recorded = async {
        let mut snapshots = SnapshotsClient::new(channel.clone());
        for (i, chain) in image.chains.iter().enumerate() {
            let key = format!("kist-pull {lease_id} {chain}");
            let prepare = PrepareSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                key: key.clone(),
                parent: i
                    .checked_sub(1)
                    .map(|p| image.chains[p].clone())
                    .unwrap_or_default(),
                labels: HashMap::from([(SNAPSHOT_REF.to_owned(), chain.clone())]),
            };
            match snapshots.prepare(scoped.leased(prepare)).await {
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) => return Err(s),
                Ok(_) => {
                    let remove = RemoveSnapshotRequest {
                        snapshotter: snapshotter.to_owned(),
                        key,
                    };
                    snapshots.remove(scoped.leased(remove)).await?;
                    return Err(tonic::Status::not_found(format!(
                        "the store has no snapshot for chain {chain}: pull it first"
                    )));
                }
            }
        }
        let top = image.chains.last().cloned().unwrap_or_default();
        let (config_digest, config) = image.config;
        let config_labels = HashMap::from([(format!("{SNAPSHOT_GC}{snapshotter}"), top)]);
        let mut content = ContentClient::new(channel.clone());
        write(&mut content, &scoped, config_digest, config, config_labels).await?;
        let (manifest_type, manifest_digest, manifest) = image.manifest;
        let mut manifest_labels =
            HashMap::from([(format!("{CONTENT_GC}config"), config_digest.to_owned())]);
        for (i, layer) in image.layers.iter().enumerate() {
            manifest_labels.insert(format!("{CONTENT_GC}l.{i}"), layer.clone());
        }
        write(
            &mut content,
            &scoped,
            manifest_digest,
            manifest,
            manifest_labels,
        )
        .await?;
        let record = Image {
            name: image.name.to_owned(),
            labels: HashMap::new(),
            target: Some(Descriptor {
                media_type: manifest_type.to_owned(),
                digest: manifest_digest.to_owned(),
                size: manifest.len() as i64,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(channel.clone());
        let create = CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        };
        match images.create(scoped.leased(create)).await {
            Err(s) if s.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                };
                images.update(scoped.leased(update)).await.map(drop)
            }
            other => other.map(drop),
        }
    }
    .await;
    let delete = DeleteRequest {
        id: lease_id.clone(),
        sync: false,
    };
    leases.delete(scoped.plain(delete)).await?;
    recorded
}

/// Writes `bytes` as the content `digest` with `labels` (content
/// containerd has already is fine).
async fn write(
    content: &mut ContentClient<Channel>,
    scope: &Scope<'_>,
    digest: &str,
    bytes: &[u8],
    labels: HashMap<String, String>,
) -> Result<(), tonic::Status> {
    let message = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: format!("kist-pull {digest}"),
        total: bytes.len() as i64,
        expected: digest.to_owned(),
        offset: 0,
        data: bytes.to_vec(),
        labels,
    };
    let written = async {
        let request = scope.leased(tokio_stream::iter([message]));
        let mut responses = content.write(request).await?;
        while responses.get_mut().message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    };
    match written.await {
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The namespace, and the lease, of a registration's requests.
struct Scope<'a> {
    namespace: &'a str,
    lease: &'a str,
}

impl Scope<'_> {
    /// `message` in the namespace.
    fn plain<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        let ns = MetadataValue::try_from(self.namespace).expect("a namespace is ASCII");
        r.metadata_mut().insert("containerd-namespace", ns);
        r
    }

    /// `message` in the namespace, under the lease.
    fn leased<T>(&self, message: T) -> Request<T> {
        let mut r = self.plain(message);
        let id = MetadataValue::try_from(self.lease).expect("a lease id is ASCII");
        r.metadata_mut().insert("containerd-lease", id);
        r
    }
}

/// containerd's collector follows these labels.
const CONTENT_GC: &str = "containerd.io/gc.ref.content.";
const SNAPSHOT_GC: &str = "containerd.io/gc.ref.snapshot.";

/// When the registration's lease expires if `kist pull` dies before it
/// deletes it: an hour from now.
fn expiry() -> String {
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    humantime::format_rfc3339_seconds(later).to_string()
}

/// A channel to containerd's gRPC socket.
async fn connect(socket: &Path) -> Result<Channel, tonic::Status> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://containerd")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("containerd's socket: {e}")))
}
