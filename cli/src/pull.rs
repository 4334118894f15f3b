//! `kist pull`: an image from a registry into snapshots, one per layer,
//! committed by chain id with `containerd.io/snapshot.ref`, so that
//! containerd on this store (`kist serve --containerd`) finds them and
//! skips the layers (the remote-snapshot path) and `ctr run` works.
//!
//! With `--from`, an image of the same repository whose layers this node
//! has as snapshots, each layer that is not here already comes from a
//! kist registry's delta endpoints: its tree and the pack of the files
//! the base layers lack, fetched in parallel and resumed where an earlier
//! pull stopped; the store regenerates the layer from them and the base
//! snapshots' files and checks it against the diff id from the image's
//! config (`snapshots.apply-delta`). Without `--from`, or from a registry
//! without the endpoints, layers are pulled whole.
//!
//! What is trusted: nothing the registry says. The manifest is checked
//! against the digest it was asked by (or that its index named), the
//! config against the manifest, every layer against the config's diff id.

use std::io::Read;

use anyhow::{Context, anyhow, bail};
use kist::{Snapshots, Store};
use kist_grpc::SNAPSHOT_REF;
use kist_http::{MANIFEST_TYPES, Upstream, UpstreamFailed};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The layer blob a pulled snapshot was made from.
const LAYER_LABEL: &str = "kist.pull/layer";
/// Largest manifest or config a pull reads.
const MAX_DOCUMENT: u64 = 4 << 20;
/// Bytes read from the network per write into the store.
const CHUNK: usize = 1 << 20;
/// Most layers downloaded at once.
const PARALLEL_LAYERS: usize = 8;

/// `kist pull` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The image: `http[s]://HOST[:PORT]/NAME:TAG` or `...NAME@DIGEST`.
    image: String,
    /// A tag or digest of the same repository whose layers this node
    /// holds as snapshots: pull only what changed (a delta pull).
    #[arg(long, value_name = "REFERENCE")]
    from: Option<String>,
    /// Record the image in the containerd listening on this socket (whose
    /// proxy snapshotter is this store's `kist serve --containerd`), so
    /// that `ctr run` starts it from these snapshots; they are held by
    /// `containerd`.
    #[arg(long, value_name = "SOCKET")]
    containerd: Option<std::path::PathBuf>,
    /// containerd's namespace for `--containerd`.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The name of the kist snapshotter in containerd's config.
    #[arg(long, default_value = "kistsnap")]
    snapshotter: String,
    /// `user:password` for the registry (Basic, or for its token realm).
    #[arg(long, env = "KIST_PULL_CREDENTIALS", hide_env_values = true)]
    credentials: Option<String>,
}

/// An image reference, parsed.
struct Reference {
    base: String,
    name: String,
    reference: String,
}

impl Reference {
    fn parse(image: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = image
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .with_context(|| format!("{image}: expected http[s]://HOST/NAME:TAG"))?;
        let (host, path) = rest
            .split_once('/')
            .with_context(|| format!("{image}: no repository name"))?;
        let (name, reference) = match path.split_once('@') {
            Some((name, digest)) => (name, digest),
            None => match path.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag),
                _ => (path, "latest"),
            },
        };
        Ok(Self {
            base: format!("{scheme}://{host}"),
            name: name.to_owned(),
            reference: reference.to_owned(),
        })
    }
}

/// What a pull needs of an image.
struct Image {
    /// The manifest: media type, digest, bytes.
    manifest: (String, String, Vec<u8>),
    /// The config: digest, bytes.
    config: (String, Vec<u8>),
    /// (digest, media type) of each layer, bottom first.
    layers: Vec<(String, String)>,
    /// The chain id of each layer's snapshot.
    chains: Vec<String>,
    /// The diff id of each layer.
    diff_ids: Vec<String>,
}

/// Pulls `args.image` into `store`'s snapshots.
pub fn run(store: &Store, args: Args) -> anyhow::Result<()> {
    let target = Reference::parse(&args.image)?;
    // containerd sees only what its holder holds.
    let store = &match args.containerd {
        Some(_) => store.as_holder(kist_grpc::HOLDER),
        None => store.clone(),
    };
    let credentials = args
        .credentials
        .as_deref()
        .map(|c| {
            c.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .context("--credentials is user:password")
        })
        .transpose()?;
    let registry = Upstream::new(&target.base, &[], credentials).map_err(|e| anyhow!(e))?;
    // Both images' manifests and configs at once: two round trips.
    let (image, base) = std::thread::scope(|s| {
        let base = args
            .from
            .as_deref()
            .map(|from| s.spawn(|| fetch_image(&registry, &target.name, from)));
        let image = fetch_image(&registry, &target.name, &target.reference);
        (
            image,
            base.map(|b| b.join().expect("fetching the base image panicked")),
        )
    });
    let image = image?;
    let bases = match base {
        Some(base) => held_bases(store, &registry, &target.name, &base?)?,
        None => Vec::new(),
    };
    let snapshots = store.snapshots();
    // Which layers are here, and the parent each missing one goes on.
    let mut here: Vec<Option<String>> = Vec::new();
    let mut parent: Option<String> = None;
    for chain in &image.chains {
        let found = committed(&snapshots, chain, parent.as_deref())?;
        parent = Some(found.clone().unwrap_or_else(|| pulled_name(chain)));
        here.push(found);
    }
    // What the missing layers need, fetched together: one more round trip.
    let missing: Vec<usize> = (0..here.len()).filter(|i| here[*i].is_none()).collect();
    let mut fetched_layers = Vec::new();
    for batch in missing.chunks(PARALLEL_LAYERS) {
        let results: Vec<anyhow::Result<Fetched>> = std::thread::scope(|s| {
            let pulls: Vec<_> = batch
                .iter()
                .map(|i| {
                    let (layer, bases) = (&image.layers[*i].0, &bases);
                    let (registry, name) = (&registry, &target.name);
                    s.spawn(move || fetch_layer(store, registry, name, layer, bases))
                })
                .collect();
            pulls
                .into_iter()
                .map(|p| p.join().expect("a layer's download panicked"))
                .collect()
        });
        for result in results {
            fetched_layers.push(result?);
        }
    }
    let mut fetched_layers = fetched_layers.into_iter();
    let mut parent: Option<String> = None;
    let (mut reused, mut fetched) = (0, 0u64);
    for (i, (layer, media_type)) in image.layers.iter().enumerate() {
        let chain = &image.chains[i];
        if let Some(name) = &here[i] {
            reused += 1;
            parent = Some(name.clone());
            continue;
        }
        let key = format!("kist-pull {chain}");
        // What an interrupted pull left: unpacking starts over (the
        // downloads resumed).
        let _ = snapshots.remove(&key);
        snapshots
            .prepare(&key, parent.as_deref(), &[])
            .with_context(|| format!("preparing {key:?} on {parent:?}"))?;
        let got = fetched_layers.next().expect("a download per missing layer");
        match &got {
            Fetched::Whole { blob, .. } => snapshots
                .apply(&key, blob, media_type)
                .with_context(|| format!("unpacking {layer}"))?,
            Fetched::Delta { tree, pack, .. } => {
                let bases: Vec<(&str, &str)> = bases
                    .iter()
                    .map(|(_, snapshot, tree)| (snapshot.as_str(), tree.as_str()))
                    .collect();
                snapshots
                    .apply_delta(&key, &image.diff_ids[i], tree, Some(pack), &bases)
                    .with_context(|| format!("rebuilding {layer} from a delta"))?
            }
        };
        let name = pulled_name(chain);
        snapshots
            .commit(&name, &key, &[(SNAPSHOT_REF, chain), (LAYER_LABEL, layer)])
            .with_context(|| format!("committing {name:?}"))?;
        let (how, bytes) = match got {
            Fetched::Whole { bytes, .. } => ("full", bytes),
            Fetched::Delta { bytes, .. } => ("delta", bytes),
        };
        println!("{chain}: {how} {bytes} bytes");
        fetched += bytes;
        parent = Some(name);
    }
    if let Some(socket) = &args.containerd {
        let name = format!(
            "{}/{}:{}",
            host(&target.base),
            target.name,
            target.reference
        );
        record_in_containerd(socket, &args, &name, &image)?;
    }
    println!(
        "pulled {}: {} layers, {reused} here already, {fetched} bytes fetched",
        args.image,
        image.layers.len()
    );
    Ok(())
}

/// `scheme://host` without its scheme: how containerd names the registry.
fn host(base: &str) -> &str {
    base.split_once("://").map_or(base, |(_, h)| h)
}

/// Records the pulled image in containerd as `name` (see
/// [`kist_grpc::register`]).
fn record_in_containerd(
    socket: &std::path::Path,
    args: &Args,
    name: &str,
    image: &Image,
) -> anyhow::Result<()> {
    let layers: Vec<String> = image.layers.iter().map(|(d, _)| d.clone()).collect();
    let record = kist_grpc::ImageRecord {
        name,
        manifest: (&image.manifest.0, &image.manifest.1, &image.manifest.2),
        config: (&image.config.0, &image.config.1),
        layers: &layers,
        chains: &image.chains,
    };
    tokio::runtime::Runtime::new()?
        .block_on(kist_grpc::register(
            socket,
            &args.namespace,
            &args.snapshotter,
            &record,
        ))
        .map_err(|s| anyhow!("recording {name} in containerd: {}", s.message()))
}

/// The committed snapshot of `chain` on `parent`: one a pull made (its
/// `snapshot.ref` label), or one containerd committed (its name ends in
/// the chain id).
fn committed(
    snapshots: &Snapshots,
    chain: &str,
    parent: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let parent = parent.unwrap_or_default();
    let filter = format!("kind==committed,parent=={parent:?}");
    Ok(snapshots
        .walk(&[&filter])?
        .into_iter()
        .find(|i| {
            i.name.ends_with(&format!("/{chain}"))
                || i.labels
                    .iter()
                    .any(|l| l.key == SNAPSHOT_REF && l.value == chain)
        })
        .map(|i| i.name))
}

/// The base image's layers this node holds as snapshots, with each
/// layer's tree: (layer digest, snapshot, tree digest).
fn held_bases(
    store: &Store,
    registry: &Upstream,
    name: &str,
    base: &Image,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let snapshots = store.snapshots();
    let mut parent: Option<String> = None;
    let mut out = Vec::new();
    for (i, (layer, media_type)) in base.layers.iter().enumerate() {
        let Some(snapshot) = committed(&snapshots, &base.chains[i], parent.as_deref())? else {
            break;
        };
        // Derived from the layer's blob if this node kept it, else the
        // registry's (checked, as everything, by the diff ids).
        let tree = match snapshots.tree_of_layer(layer, media_type) {
            Ok(t) => t.tree,
            Err(kist::Error::NotFound) => {
                download(store, registry, &format!("{name}/trees/{layer}")).map(|(t, _)| t)?
            }
            Err(e) => return Err(e).with_context(|| format!("the tree of {layer}")),
        };
        out.push((layer.clone(), snapshot.clone(), tree));
        parent = Some(snapshot);
    }
    if out.is_empty() {
        eprintln!("kist: no layer of the base image is here: pulling whole layers");
    }
    Ok(out)
}

/// What was fetched for a missing layer, and how many bytes.
enum Fetched {
    Whole {
        blob: String,
        bytes: u64,
    },
    Delta {
        tree: String,
        pack: String,
        bytes: u64,
    },
}

/// Fetches what `layer` needs: with `bases`, its tree and the pack of
/// what they lack, in parallel; else the whole layer.
fn fetch_layer(
    store: &Store,
    registry: &Upstream,
    name: &str,
    layer: &str,
    bases: &[(String, String, String)],
) -> anyhow::Result<Fetched> {
    if bases.is_empty() {
        let (blob, bytes) = download(store, registry, &blob_path(name, layer))?;
        return Ok(Fetched::Whole { blob, bytes });
    }
    let query: Vec<String> = bases.iter().map(|(l, _, _)| format!("base={l}")).collect();
    let pack_path = format!("{name}/packs/{layer}?{}", query.join("&"));
    let tree_path = format!("{name}/trees/{layer}");
    let (tree, pack) = std::thread::scope(|s| {
        let pack = s.spawn(|| download(store, registry, &pack_path));
        let tree = download(store, registry, &tree_path);
        (tree, pack.join().expect("the pack download panicked"))
    });
    let ((tree, tree_bytes), (pack, pack_bytes)) = (tree?, pack?);
    Ok(Fetched::Delta {
        tree,
        pack,
        bytes: tree_bytes + pack_bytes,
    })
}

/// The name a pull commits the snapshot of `chain` as.
fn pulled_name(chain: &str) -> String {
    format!("kist-pull/{chain}")
}

fn blob_path(name: &str, digest: &str) -> String {
    format!("{name}/blobs/{digest}")
}

/// Downloads `path` (under `/v2/`, or `/kist/v1/` for trees and packs)
/// into the store through a resumable ingest: an earlier, interrupted
/// download of it goes on from where it stopped. Returns the blob's
/// digest (the one the registry names, checked by the store at commit)
/// and the bytes fetched now.
fn download(store: &Store, registry: &Upstream, path: &str) -> anyhow::Result<(String, u64)> {
    let delta = path.contains("/trees/") || path.contains("/packs/");
    let reference = format!("kist-pull {path}");
    let mut writer = store
        .writer(&reference, None, None)
        .with_context(|| format!("storing {path}"))?;
    let offset = writer.status()?.offset;
    let request = |offset| match delta {
        true => registry.request_delta(path, offset),
        false => registry.request("GET", path, &[], offset),
    };
    let response = match request(offset) {
        // All of it is here already (a pull stopped before the commit).
        Err(UpstreamFailed::Status(416)) if offset > 0 => {
            writer.truncate(0)?;
            request(0)
        }
        other => other,
    }
    .map_err(|e| anyhow!("{path}: {e}"))?;
    if offset > 0 && response.status() != 206 {
        // Not resumed: the whole body comes again.
        writer.truncate(0)?;
    }
    let digest = match path.split_once("/blobs/") {
        Some((_, digest)) => digest.to_owned(),
        None => response
            .header("docker-content-digest")
            .with_context(|| format!("{path}: no Docker-Content-Digest"))?
            .to_owned(),
    };
    let mut body = response.into_reader();
    let mut buffer = vec![0; CHUNK];
    let mut fetched = 0u64;
    loop {
        let n = body
            .read(&mut buffer)
            .with_context(|| format!("reading {path}"))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n])?;
        fetched += n as u64;
    }
    match writer.commit(None, Some(&digest), &[]) {
        Ok(_) | Err(kist::Error::AlreadyExists) => Ok((digest, fetched)),
        Err(e) => Err(anyhow!("{path}: {e}")),
    }
}

/// The manifest (for this machine's platform, from an index) and the
/// config of `name:reference`, each checked against its digest.
fn fetch_image(registry: &Upstream, name: &str, reference: &str) -> anyhow::Result<Image> {
    let (mut bytes, mut manifest) = document(
        registry,
        &format!("{name}/manifests/{reference}"),
        reference,
    )?;
    if manifest["manifests"].is_array() {
        let wanted = platform();
        let chosen = manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == wanted)
            .with_context(|| format!("{name}:{reference} has no linux/{wanted} manifest"))?;
        let digest = chosen["digest"]
            .as_str()
            .context("an index entry without digest")?;
        (bytes, manifest) = document(registry, &format!("{name}/manifests/{digest}"), digest)?;
    }
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("a manifest without config")?
        .to_owned();
    let (config_bytes, config) =
        document(registry, &blob_path(name, &config_digest), &config_digest)?;
    let layers: Vec<(String, String)> = manifest["layers"]
        .as_array()
        .context("a manifest without layers")?
        .iter()
        .map(|l| {
            Ok((
                l["digest"]
                    .as_str()
                    .context("a layer without digest")?
                    .to_owned(),
                l["mediaType"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .context("a config without rootfs.diff_ids")?
        .iter()
        .map(|d| {
            d.as_str()
                .map(str::to_owned)
                .context("a diff id is not a string")
        })
        .collect::<anyhow::Result<_>>()?;
    if diff_ids.len() != layers.len() {
        bail!(
            "{name}:{reference}: {} layers but {} diff ids",
            layers.len(),
            diff_ids.len()
        );
    }
    let mut chains: Vec<String> = Vec::new();
    for d in &diff_ids {
        chains.push(match chains.last() {
            None => d.clone(),
            Some(parent) => sha256(format!("{parent} {d}").as_bytes()),
        });
    }
    Ok(Image {
        manifest: (media_type, sha256(&bytes), bytes),
        config: (config_digest, config_bytes),
        layers,
        chains,
        diff_ids,
    })
}

/// A JSON document at `path`, checked against `reference` when it is a
/// digest: its bytes and what they parse to.
fn document(registry: &Upstream, path: &str, reference: &str) -> anyhow::Result<(Vec<u8>, Value)> {
    let response = registry
        .request("GET", path, &MANIFEST_TYPES, 0)
        .map_err(|e| anyhow!("{path}: {e}"))?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {path}"))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        bail!("{path}: larger than {MAX_DOCUMENT} bytes");
    }
    if reference.starts_with("sha256:") && sha256(&bytes) != reference {
        bail!("{path}: the registry sent content that is not {reference}");
    }
    let value = serde_json::from_slice(&bytes).with_context(|| format!("{path}: not JSON"))?;
    Ok((bytes, value))
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// This machine's architecture as OCI names it.
fn platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
