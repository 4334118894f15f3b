//! A hostile component for the sandbox tests: it fits kist's
//! `store-component` world, so kist's host loads it like the real store,
//! but `store.info(name)` runs the attack `name` and reports the outcome
//! as an `io` error: `refused: ...` when the host stopped it, `ESCAPED: ...`
//! when it got through. Attacks that cannot report (memory, endless loop,
//! resource floods) end in a trap the host must survive.
//!
//! Every other export traps: the tests never call them.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "store-component",
        generate_all,
    });
}

mod objects;

use bindings::exports::kist::content::{
    fsck, ingester, layers, leases, lending, registry, retention, snapshots, store, storer, types,
};
use bindings::kist::content::copier;
use bindings::kist::content::fetch;
use bindings::kist::content::hasher::{Algorithm, Hasher};
use bindings::kist::content::inflate::{Compression, Inflater};
use bindings::kist::content::lender::{self, Loan};
use bindings::kist::content::locks;
use bindings::kist::content::trees::{self, Attributes};
use bindings::wasi::filesystem::preopens;
use bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use bindings::wasi::io::streams::InputStream;
use types::{BlobInfo, Error, IngestStatus, Label};

struct Hostile;

fn root() -> Descriptor {
    preopens::get_directories()
        .into_iter()
        .next()
        .expect("a preopened store")
        .0
}

/// `copier` asked to write into what the guest may only read, to read
/// what it may only write, to use directories, and to wrap offsets around;
/// then a legal copy with a huge length, whose count and hash must be of
/// exactly the source's bytes.
fn copy_escapes() -> String {
    let dir = root();
    let file = |path: &str, flags: DescriptorFlags, how: OpenFlags| {
        dir.open_at(PathFlags::empty(), path, how, flags)
            .expect("opening a file in the store")
    };
    let layout = file("oci-layout", DescriptorFlags::READ, OpenFlags::empty());
    let write_only = file("copy-scratch", DescriptorFlags::WRITE, OpenFlags::CREATE);
    let both = file(
        "copy-scratch",
        DescriptorFlags::READ | DescriptorFlags::WRITE,
        OpenFlags::empty(),
    );
    let hasher = Hasher::new(Algorithm::Sha256);
    let empty = hasher.sum();
    // Every refusal must leave the hash as it was.
    let tried = |what: &str, attempt: Result<(), copier::CopyError>| match hasher.sum() == empty {
        true => outcome(what, attempt),
        false => format!("ESCAPED: {what} changed the hash"),
    };
    let copy = |from: &Descriptor, at: u64, to: &Descriptor, to_at: u64| {
        copier::copy_hashed(from, at, to, to_at, 10, &hasher).map(drop)
    };
    let tries = [
        tried("into a read-only file", copy(&both, 0, &layout, 0)),
        tried("into the store directory", copy(&layout, 0, &dir, 0)),
        tried("from the store directory", copy(&dir, 0, &write_only, 0)),
        tried("from a write-only file", copy(&write_only, 0, &both, 0)),
        tried(
            "source offset wraps",
            copy(&layout, u64::MAX, &write_only, 0),
        ),
        tried(
            "target offset wraps",
            copy(&layout, 0, &write_only, u64::MAX - 5),
        ),
        tried(
            "write into a read-only file",
            copier::write_hashed(&layout, 0, b"overwritten", &hasher),
        ),
    ];
    if let Some(escaped) = tries.iter().find(|t| t.starts_with("ESCAPED")) {
        return escaped.clone();
    }
    let copied = copier::copy_hashed(&layout, 0, &write_only, 0, u64::MAX / 2, &hasher);
    let beyond = copier::copy_hashed(&layout, 1 << 40, &write_only, 0, 100, &hasher);
    let hex: String = hasher.sum().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{} | copied {copied:?} | beyond {beyond:?} | sha256 {hex}",
        tries.join(" / ")
    )
}

/// What `store.lend(name)` lends: the attack `name`'s descriptor and
/// range. A refusal by `lender` (or by WASI, for what the guest cannot
/// open) comes back as `io("refused: ...")`; anything lent is what the
/// host will read.
fn lend_attack(name: &str) -> Result<Loan, Error> {
    let dir = root();
    let open = |path: &str, flags: DescriptorFlags, how: OpenFlags, follow: PathFlags| {
        dir.open_at(follow, path, how, flags)
            .map_err(|e| Error::Io(format!("refused: opening {path}: {e:?}")))
    };
    let plain = |path: &str, flags: DescriptorFlags| {
        open(path, flags, OpenFlags::empty(), PathFlags::empty())
    };
    let (descriptor, offset, length) = match name {
        "directory" => (root(), 0, 0),
        "write-only" => (
            open(
                "copy-scratch",
                DescriptorFlags::WRITE,
                OpenFlags::CREATE,
                PathFlags::empty(),
            )?,
            0,
            0,
        ),
        "past-the-end" => (plain("oci-layout", DescriptorFlags::READ)?, 0, 1 << 40),
        "offset-wraps" => (plain("oci-layout", DescriptorFlags::READ)?, u64::MAX, 2),
        "dotdot" => (
            open(
                "../outside/canary",
                DescriptorFlags::READ,
                OpenFlags::empty(),
                PathFlags::SYMLINK_FOLLOW,
            )?,
            0,
            6,
        ),
        "planted-symlink" => (
            open(
                "planted/canary",
                DescriptorFlags::READ,
                OpenFlags::empty(),
                PathFlags::SYMLINK_FOLLOW,
            )?,
            0,
            6,
        ),
        // Legal: a file beneath the store, whole.
        "oci-layout" => {
            let file = plain("oci-layout", DescriptorFlags::READ)?;
            let size = file.stat().expect("stat").size;
            (file, 0, size)
        }
        other => return Err(Error::Io(format!("unknown lend attack {other}"))),
    };
    lender::lend(descriptor, offset, length).map_err(|e| Error::Io(format!("refused: {e:?}")))
}

/// `refused: <what>` if `attempt` failed, `ESCAPED: <what>` if it worked.
fn outcome<T, E: std::fmt::Debug>(what: &str, attempt: Result<T, E>) -> String {
    match attempt {
        Ok(_) => format!("ESCAPED: {what}"),
        Err(e) => format!("refused: {what}: {e:?}"),
    }
}

fn open(path: &str, follow: bool, create: bool) -> String {
    let flags = if follow {
        PathFlags::SYMLINK_FOLLOW
    } else {
        PathFlags::empty()
    };
    let (how, rights) = if create {
        (OpenFlags::CREATE, DescriptorFlags::WRITE)
    } else {
        (OpenFlags::empty(), DescriptorFlags::READ)
    };
    outcome(path, root().open_at(flags, path, how, rights))
}

/// Runs the attack `name`; its report, or a trap.
fn attack(name: &str) -> String {
    match name {
        "read-dotdot" => open("../outside/canary", true, false),
        "write-dotdot" => open("../outside/planted-by-guest", true, true),
        "absolute" => open("/etc/passwd", true, false),
        "follow-planted-symlink" => open("planted/canary", true, false),
        "write-through-planted-symlink" => open("planted/planted-by-guest", true, true),
        "make-symlink-out" => {
            // Making a link that points out is harmless (WASI hosts allow
            // it); following it is the escape.
            let made = root().symlink_at("../outside", "up").is_ok();
            format!("{} (link made: {made})", open("up/canary", true, false))
        }
        "rename-out" => outcome(
            "rename oci-layout out",
            root().rename_at("oci-layout", &root(), "../outside/stolen"),
        ),
        "lock-absurd-names" => {
            let long = outcome("a 1 MiB lock name", locks::try_lock(&"x".repeat(1 << 20)));
            let empty = outcome("an empty lock name", locks::try_lock(""));
            let nul = outcome("a lock name with NUL", locks::lock("a\0b", 10));
            format!("{long} / {empty} / {nul}")
        }
        "lock-wait-forever" => {
            let _held = locks::lock("same", 0).expect("first lock");
            // The host caps the wait at the call deadline, not 49 days.
            outcome(
                "waiting u32::MAX ms on a held lock",
                locks::lock("same", u32::MAX),
            )
        }
        "lock-flood" => {
            let mut held = Vec::new();
            let refusal = loop {
                match locks::try_lock(&format!("flood-{}", held.len())) {
                    Ok(g) => held.push(g),
                    Err(e) => break e,
                }
                if held.len() == 100_000 {
                    return format!("ESCAPED: held {} locks", held.len());
                }
            };
            format!("refused: after {} locks: {refusal:?}", held.len())
        }
        "trees-escapes" => {
            // The scene plants `planted` -> ../outside; the guest makes
            // `up` -> ../outside/canary itself.
            let _ = root().symlink_at("../outside/canary", "up");
            let wide = Attributes {
                mode: 0o777,
                uid: 4242,
                gid: 4242,
                mtime: None,
            };
            let tries = [
                outcome(
                    "chmod ../outside",
                    trees::set_attributes("../outside/canary", wide),
                ),
                outcome(
                    "chmod /etc/passwd",
                    trees::set_attributes("/etc/passwd", wide),
                ),
                outcome(
                    "chmod through planted",
                    trees::set_attributes("planted/canary", wide),
                ),
                outcome("stat through planted", trees::stat("planted/canary")),
                outcome(
                    "xattr through planted",
                    trees::set_xattr("planted/canary", "user.x", b"1"),
                ),
                outcome("xattrs through planted", trees::xattrs("planted/canary")),
                outcome(
                    "whiteout through planted",
                    trees::make_whiteout("planted/wh"),
                ),
                outcome("fifo through planted", trees::make_fifo("planted/fifo")),
                outcome(
                    "symlink through planted",
                    trees::symlink("planted/ln", "/etc"),
                ),
                outcome("readlink through planted", trees::read_link("planted/ln")),
                outcome("usage of planted", trees::usage("planted")),
                outcome("usage through planted", trees::usage("planted/")),
                outcome(
                    "remove through planted",
                    trees::remove_tree("planted/canary"),
                ),
                outcome("remove dotdot", trees::remove_tree("a/../../outside")),
                outcome("empty path", trees::stat("")),
                outcome("NUL in a path", trees::stat("a\0b")),
                outcome(
                    "inflate through planted",
                    Inflater::new("planted/canary", Compression::None).read(100),
                ),
                outcome(
                    "inflate dotdot",
                    Inflater::new("../outside/canary", Compression::None).read(100),
                ),
                outcome(
                    "inflate through up",
                    Inflater::new("up", Compression::None).read(100),
                ),
            ];
            // The last component is never followed: these act on the link
            // `up` itself (and must not reach the canary behind it).
            let _ = trees::set_attributes("up", wide);
            let _ = trees::set_xattr("up", "user.x", b"1");
            if let Some(escaped) = tries.iter().find(|t| t.starts_with("ESCAPED")) {
                return escaped.clone();
            }
            format!("refused: {}", tries.join(" / "))
        }
        n if n.starts_with("fetch-escapes ") => {
            // `fetch-escapes <allowed origin> <forbidden origin>`
            let mut origins = n.split(' ').skip(1);
            let (allowed, forbidden) = (origins.next().unwrap(), origins.next().unwrap());
            let host = |o: &str| o.trim_start_matches("http://").to_owned();
            let attempts = [
                format!("{forbidden}/direct"),
                // The allowed server answers with a redirect to the other.
                format!("{allowed}/redirect"),
                format!("http://{}@{}/userinfo", host(allowed), host(forbidden)),
                // The allowed server's port under another name.
                format!(
                    "http://localhost:{}/alias",
                    allowed.rsplit(':').next().unwrap()
                ),
                "file:///etc/passwd".to_owned(),
                "gopher://127.0.0.1/".to_owned(),
                String::new(),
            ];
            attempts
                .iter()
                .map(|u| outcome(&format!("fetch {u}"), fetch::get(u, 0)))
                .collect::<Vec<_>>()
                .join("; ")
        }
        "copy-escapes" => copy_escapes(),
        "objects-escapes" => objects::escapes(),
        "objects-contract" => objects::contract(),
        "objects-race" => objects::race(),
        "hasher-garbage-state" => {
            let restored = Hasher::restore(Algorithm::Sha256, &vec![0xff; 1 << 20]);
            match restored {
                Some(_) => "ESCAPED: a garbage hash state was restored".into(),
                None => "refused: garbage hash state".into(),
            }
        }
        "hasher-flood" => {
            // Traps once the host's cap is reached.
            let hashers: Vec<Hasher> = (0..1_000_000)
                .map(|_| Hasher::new(Algorithm::Sha512))
                .collect();
            format!("ESCAPED: {} hashers", hashers.len())
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 16 << 20]);
                if hoard.len() > 1024 {
                    return format!("ESCAPED: {} MiB", hoard.len() * 16);
                }
            }
        }
        "spin" => loop {
            std::hint::black_box(());
        },
        other => format!("unknown attack {other}"),
    }
}

impl store::Guest for Hostile {
    type Walker = Never;
    type Reader = Never;

    fn info(name: String) -> Result<BlobInfo, Error> {
        Err(Error::Io(attack(&name)))
    }
    fn update(_: BlobInfo, _: Vec<String>) -> Result<BlobInfo, Error> {
        unreachable!()
    }
    fn delete(_: String, _: Option<String>) -> Result<Vec<String>, Error> {
        unreachable!()
    }
    fn hold(_: String, _: String) -> Result<BlobInfo, Error> {
        unreachable!()
    }
    fn purge(_: String) -> Result<u64, Error> {
        unreachable!()
    }
    fn walk(_: Vec<String>) -> Result<store::Walker, Error> {
        unreachable!()
    }
    fn walk_cached(_: Vec<String>) -> Result<store::Walker, Error> {
        unreachable!()
    }
    fn open_reader(_: String) -> Result<store::Reader, Error> {
        unreachable!()
    }
    fn read_blob(_: String, _: u64) -> Result<Vec<u8>, Error> {
        unreachable!()
    }
}

impl lending::Guest for Hostile {
    fn lend(name: String) -> Result<Loan, Error> {
        lend_attack(&name)
    }
}

/// The resources this component never creates.
pub enum Never {}

impl store::GuestWalker for Never {
    fn next(&self) -> Result<Vec<BlobInfo>, Error> {
        match *self {}
    }
}

impl store::GuestReader for Never {
    fn size(&self) -> u64 {
        match *self {}
    }
    fn read_at(&self, _: u64, _: u64) -> Result<Vec<u8>, Error> {
        match *self {}
    }
    fn read_via_stream(&self, _: u64) -> Result<InputStream, Error> {
        match *self {}
    }
}

impl ingester::Guest for Hostile {
    type Writer = Never;

    fn open_writer(_: String, _: ingester::WriterOptions) -> Result<ingester::Writer, Error> {
        unreachable!()
    }
    fn put(_: ingester::PutRequest) -> Result<String, Error> {
        unreachable!()
    }
    fn put_batch(
        _: Vec<ingester::PutRequest>,
        _: ingester::Durability,
    ) -> Result<Vec<Result<String, Error>>, Error> {
        unreachable!()
    }
    fn status(_: String) -> Result<IngestStatus, Error> {
        unreachable!()
    }
    fn list_statuses(_: Vec<String>) -> Result<Vec<IngestStatus>, Error> {
        unreachable!()
    }
    fn abort(_: String) -> Result<(), Error> {
        unreachable!()
    }
}

impl ingester::GuestWriter for Never {
    fn write(&self, _: Vec<u8>) -> Result<(), Error> {
        match *self {}
    }
    fn write_from(&self, _: &Descriptor, _: u64, _: u64) -> Result<u64, Error> {
        match *self {}
    }
    fn status(&self) -> Result<IngestStatus, Error> {
        match *self {}
    }
    fn digest(&self) -> String {
        match *self {}
    }
    fn truncate(&self, _: u64) -> Result<(), Error> {
        match *self {}
    }
    fn commit(
        _: ingester::Writer,
        _: Option<u64>,
        _: Option<String>,
        _: Vec<Label>,
    ) -> Result<String, Error> {
        unreachable!()
    }
}

impl fsck::Guest for Hostile {
    type Check = NoCheck;
}

/// Checks are never run against this component.
pub struct NoCheck;

impl fsck::GuestCheck for NoCheck {
    fn new(_: bool) -> Self {
        unreachable!()
    }
    fn next(&self) -> Result<Option<Vec<fsck::Problem>>, Error> {
        unreachable!()
    }
    fn progress(&self) -> (u64, u64) {
        unreachable!()
    }
}

impl storer::Guest for Hostile {
    type ArtifactLock = Never;

    fn reconcile_artifact(
        _: storer::Object,
        _: String,
        _: String,
        _: storer::Source<'_>,
        _: Vec<Label>,
    ) -> Result<storer::Artifact, Error> {
        unreachable!()
    }
    fn reconcile_storage(
        _: storer::Object,
        _: storer::RetentionPolicy,
    ) -> Result<Vec<storer::Artifact>, Error> {
        unreachable!()
    }
    fn remove_object(_: storer::Object) -> Result<Vec<storer::Artifact>, Error> {
        unreachable!()
    }
    fn archive(_: &Descriptor, _: storer::ArchiveOptions) -> Result<(String, u64), Error> {
        unreachable!()
    }
    fn get(_: String) -> Result<Option<storer::Artifact>, Error> {
        unreachable!()
    }
    fn verify(_: String) -> Result<storer::Artifact, Error> {
        unreachable!()
    }
    fn list(_: Vec<String>) -> Result<Vec<storer::Artifact>, Error> {
        unreachable!()
    }
    fn extract(
        _: String,
        _: String,
        _: &Descriptor,
        _: storer::ExtractOptions,
    ) -> Result<u64, Error> {
        unreachable!()
    }
    fn lock(_: storer::Object, _: u32) -> Result<storer::ArtifactLock, Error> {
        unreachable!()
    }
}

impl storer::GuestArtifactLock for Never {}

impl leases::Guest for Hostile {
    fn create(_: Option<String>, _: Option<u64>, _: Vec<Label>) -> Result<leases::Lease, Error> {
        unreachable!()
    }
    fn get(_: String) -> Result<leases::Lease, Error> {
        unreachable!()
    }
    fn list(_: Vec<String>) -> Result<Vec<leases::Lease>, Error> {
        unreachable!()
    }
    fn delete(_: String) -> Result<(), Error> {
        unreachable!()
    }
    fn add_resource(_: String, _: leases::LeaseResource) -> Result<(), Error> {
        unreachable!()
    }
    fn delete_resource(_: String, _: leases::LeaseResource) -> Result<(), Error> {
        unreachable!()
    }
    fn resources(_: String) -> Result<Vec<leases::LeaseResource>, Error> {
        unreachable!()
    }
}

impl retention::Guest for Hostile {
    type Collection = Never;

    fn get_settings() -> Result<retention::Settings, Error> {
        unreachable!()
    }
    fn set_settings(_: retention::Settings) -> Result<(), Error> {
        unreachable!()
    }
    fn set_quota(_: retention::Quota) -> Result<(), Error> {
        unreachable!()
    }
    fn remove_quota(_: Option<String>) -> Result<(), Error> {
        unreachable!()
    }
    fn quotas() -> Result<Vec<retention::Quota>, Error> {
        unreachable!()
    }
    fn usage() -> Result<retention::SpaceUsage, Error> {
        unreachable!()
    }
}

impl retention::GuestCollection for Never {
    fn new(_: bool) -> Self {
        unreachable!()
    }
    fn next(&self) -> Result<Option<Vec<retention::Removed>>, Error> {
        match *self {}
    }
}

impl registry::Guest for Hostile {
    fn stat_blob(_: String, _: String) -> Result<u64, registry::RegistryError> {
        unreachable!()
    }
    fn mount_blob(_: String, _: String, _: String) -> Result<bool, registry::RegistryError> {
        unreachable!()
    }
    fn delete_blob(_: String, _: String) -> Result<(), registry::RegistryError> {
        unreachable!()
    }
    fn open_upload(
        _: String,
        _: String,
        _: bool,
    ) -> Result<ingester::Writer, registry::RegistryError> {
        unreachable!()
    }
    fn upload_offset(_: String, _: String) -> Result<u64, registry::RegistryError> {
        unreachable!()
    }
    fn cancel_upload(_: String, _: String) -> Result<(), registry::RegistryError> {
        unreachable!()
    }
    fn put_manifest(
        _: String,
        _: String,
        _: String,
        _: Vec<u8>,
        _: Vec<String>,
    ) -> Result<registry::Pushed, registry::RegistryError> {
        unreachable!()
    }
    fn cache_manifest(
        _: String,
        _: String,
        _: String,
        _: Vec<u8>,
        _: Vec<String>,
        _: u64,
    ) -> Result<registry::Pushed, registry::RegistryError> {
        unreachable!()
    }
    fn keep_manifest(_: String, _: String, _: u64) -> Result<(), registry::RegistryError> {
        unreachable!()
    }
    fn tree_of_layer(_: String, _: String) -> Result<types::LayerTree, registry::RegistryError> {
        unreachable!()
    }
    fn layer_pack(
        _: String,
        _: String,
        _: Vec<String>,
    ) -> Result<(String, u64), registry::RegistryError> {
        unreachable!()
    }
    fn read_upload(
        _: String,
        _: String,
        _: u64,
        _: u32,
    ) -> Result<Vec<u8>, registry::RegistryError> {
        unreachable!()
    }
    fn get_manifest(_: String, _: String) -> Result<registry::Manifest, registry::RegistryError> {
        unreachable!()
    }
    fn delete_manifest(_: String, _: String) -> Result<(), registry::RegistryError> {
        unreachable!()
    }
    fn delete_tag(_: String, _: String) -> Result<(), registry::RegistryError> {
        unreachable!()
    }
    fn sync_index() -> Result<bool, registry::RegistryError> {
        unreachable!()
    }
    fn tags(
        _: String,
        _: Option<String>,
        _: Option<u32>,
    ) -> Result<registry::Page, registry::RegistryError> {
        unreachable!()
    }
    fn repositories(
        _: Option<String>,
        _: Option<u32>,
    ) -> Result<registry::Page, registry::RegistryError> {
        unreachable!()
    }
    fn referrers(
        _: String,
        _: String,
        _: Option<String>,
        _: Option<String>,
        _: u64,
    ) -> Result<registry::ReferrersPage, registry::RegistryError> {
        unreachable!()
    }
}

impl snapshots::Guest for Hostile {
    fn prepare(
        _: String,
        _: Option<String>,
        _: snapshots::SnapshotOptions,
    ) -> Result<Vec<snapshots::Mount>, Error> {
        unreachable!()
    }
    fn view(
        _: String,
        _: Option<String>,
        _: snapshots::SnapshotOptions,
    ) -> Result<Vec<snapshots::Mount>, Error> {
        unreachable!()
    }
    fn commit(_: String, _: String, _: snapshots::SnapshotOptions) -> Result<(), Error> {
        unreachable!()
    }
    fn mounts(_: String) -> Result<Vec<snapshots::Mount>, Error> {
        unreachable!()
    }
    fn remove(_: String) -> Result<(), Error> {
        unreachable!()
    }
    fn stat(_: String) -> Result<snapshots::Info, Error> {
        unreachable!()
    }
    fn update(_: snapshots::Info, _: Vec<String>) -> Result<snapshots::Info, Error> {
        unreachable!()
    }
    fn usage(_: String) -> Result<snapshots::DiskUsage, Error> {
        unreachable!()
    }
    fn walk(_: Vec<String>) -> Result<Vec<snapshots::Info>, Error> {
        unreachable!()
    }
    fn cleanup() -> Result<u32, Error> {
        unreachable!()
    }
    fn apply(_: String, _: String, _: String, _: u64) -> Result<String, Error> {
        unreachable!()
    }
    fn tree_of_layer(_: String, _: String) -> Result<types::LayerTree, Error> {
        unreachable!()
    }
    fn apply_delta(
        _: String,
        _: String,
        _: String,
        _: Option<String>,
        _: Vec<(String, String)>,
        _: u64,
    ) -> Result<String, Error> {
        unreachable!()
    }
    fn diff(_: String, _: Option<String>) -> Result<snapshots::Layer, Error> {
        unreachable!()
    }
}

/// Never made: `process-desired` traps.
struct NoRun;

impl layers::GuestRun for NoRun {
    fn step(&self) -> Result<Option<layers::Progress>, Error> {
        unreachable!()
    }
    fn results(&self) -> Vec<layers::LayerResult> {
        unreachable!()
    }
}

impl layers::Guest for Hostile {
    type Run = NoRun;

    fn process_desired(
        _: Vec<layers::LayerDesc>,
        _: layers::Options,
        _: Vec<layers::LentDir>,
    ) -> Result<layers::Run, Error> {
        unreachable!()
    }
    fn info(_: String) -> Result<layers::LayerInfo, Error> {
        unreachable!()
    }
    fn list(_: Vec<String>) -> Result<Vec<layers::LayerInfo>, Error> {
        unreachable!()
    }
}

bindings::export!(Hostile with_types_in bindings);
