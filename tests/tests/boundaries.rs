//! Boundaries the component enforces (issue 27): a caller confined to a
//! holder sees and changes only what that holder holds or reaches, labels
//! are per holder, and what the collector keeps is readable. Each test
//! failed against the code before its fix.

use crate::containerd_content::on_socket;
use kist::{Error, Store};
use kist_tests::{Harness, collect, digests, open_embedded, sha256};

const REF: &str = "containerd.io/gc.ref.content";

fn labels_of(store: &Store, digest: &str) -> Vec<(String, String)> {
    let info = store.info(digest).unwrap();
    info.labels.into_iter().map(|l| (l.key, l.value)).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `kist --store STORE ARGS...`, run to its end.
fn kist_at(store: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("KIST_STORE")
        .output()
        .unwrap()
}

fn denied<T: std::fmt::Debug>(r: kist::Result<T>) {
    assert!(matches!(r, Err(Error::Denied(_))), "not denied: {r:?}");
}

fn not_found<T: std::fmt::Debug>(r: kist::Result<T>) {
    assert!(matches!(r, Err(Error::NotFound)), "not not-found: {r:?}");
}

/// A handle confined to a holder sees only what its holder holds (or
/// reaches), changes only that, and cannot reach past it by naming
/// another holder or by administering the store.
#[test]
fn confined_handles_see_and_change_only_their_own_blobs() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let theirs = store
        .put_with(b"the default's", None, &[("app", "kist")])
        .unwrap();
    let containerd = store.confined_to("containerd");
    let mine = containerd.put(b"containerd's").unwrap();

    // Seen: only its own.
    not_found(containerd.info(&theirs));
    not_found(containerd.get(&theirs));
    not_found(containerd.reader(&theirs).map(|r| r.size()));
    assert_eq!(digests(&containerd, &[]), std::slice::from_ref(&mine));
    assert_eq!(containerd.info(&mine).unwrap().holders, ["containerd"]);
    // Changed: nothing of another's.
    not_found(containerd.label(&theirs, &[("app", None)]));
    not_found(containerd.delete(&theirs));
    denied(containerd.as_holder("default").delete(&theirs));
    denied(containerd.as_holder("default").put(b"as another"));
    denied(containerd.confined_to("default").delete(&theirs));
    denied(containerd.purge(&theirs));
    // The whole store is the administrator's.
    denied(
        containerd
            .retention()
            .collect(false)
            .and_then(|mut c| c.next().transpose()),
    );
    denied(containerd.retention().settings());
    denied(containerd.leases().list(&[]));
    denied(
        containerd
            .check(false)
            .and_then(|mut c| c.next().transpose()),
    );
    denied(
        containerd
            .walk_cached(&[])
            .and_then(|mut w| w.next().transpose()),
    );
    denied(containerd.registry().repositories(None, None));
    denied(containerd.storer().list(&[]));
    assert_eq!(labels_of(&store, &theirs), pairs(&[("app", "kist")]));
    assert_eq!(store.info(&theirs).unwrap().holders, ["default"]);

    // Knowing a digest lets it hold the content (containerd's shared
    // policy), and its labels are its own: the other holder's stay.
    containerd.hold(&theirs).unwrap();
    assert!(labels_of(&containerd, &theirs).is_empty());
    containerd
        .label(&theirs, &[("app", Some("mine")), ("x", Some("y"))])
        .unwrap();
    assert_eq!(
        labels_of(&containerd, &theirs),
        pairs(&[("app", "mine"), ("x", "y")])
    );
    assert_eq!(labels_of(&store, &theirs), pairs(&[("app", "kist")]));
    assert_eq!(containerd.info(&theirs).unwrap().holders, ["containerd"]);
    // Releasing drops its hold and its labels, nobody else's.
    assert!(containerd.delete(&theirs).unwrap().is_empty());
    assert_eq!(store.info(&theirs).unwrap().holders, ["default"]);
    assert_eq!(labels_of(&store, &theirs), pairs(&[("app", "kist")]));
    assert!(
        store
            .as_holder("containerd")
            .info(&theirs)
            .unwrap()
            .labels
            .is_empty()
    );
}

/// What a confined holder holds keeps what its labels reference, and it
/// reads that too; another holder's references show it nothing.
#[test]
fn confined_handles_read_what_their_references_reach() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let containerd = store.confined_to("containerd");
    let layer = store.put(b"a layer the default stored").unwrap();
    let config = store.put(b"a config").unwrap();
    not_found(containerd.get(&layer));
    let manifest = containerd
        .put_with(b"a manifest", None, &[(REF, &layer)])
        .unwrap();
    assert_eq!(
        containerd.get(&layer).unwrap(),
        b"a layer the default stored"
    );
    assert!(
        containerd.info(&layer).unwrap().holders.is_empty(),
        "reached, not held"
    );
    // Another holder's reference reaches nothing for containerd.
    store
        .as_holder("other")
        .put_with(b"other's manifest", None, &[(REF, &config)])
        .unwrap();
    not_found(containerd.get(&config));
    // Its own label moved off the layer: no longer reached.
    containerd.label(&manifest, &[(REF, None)]).unwrap();
    not_found(containerd.get(&layer));
}

/// Reachable means visible (item 15): a blob a held blob references is
/// kept by the collector and readable, with no holder shown, after its
/// own holder released it; once nothing reaches it, it is gone.
#[test]
fn what_the_collector_keeps_is_readable() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let child = store.as_holder("a").put(b"child").unwrap();
    let parent = store
        .as_holder("b")
        .put_with(b"parent", None, &[(REF, &child)])
        .unwrap();
    store.as_holder("a").delete(&child).unwrap();
    assert_eq!(collect(&store), 0);
    assert!(store.info(&child).unwrap().holders.is_empty());
    assert_eq!(store.get(&child).unwrap(), b"child");
    let out = kist_at(h.path(), &["info", &child]);
    assert!(out.status.success(), "kist info: {out:?}");
    store.as_holder("b").delete(&parent).unwrap();
    assert!(collect(&store) > 0);
    not_found(store.info(&child));
}

/// Ingests belong to the holders they were opened for: a confined caller
/// neither lists, describes, resumes nor aborts another's.
#[test]
fn confined_handles_own_only_their_ingests() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let containerd = store.confined_to("containerd");
    let mut theirs = store.writer("containerd/shared-name", None, None).unwrap();
    theirs.write_all(b"the default's bytes").unwrap();
    drop(theirs);
    let mut mine = containerd.writer("containerd/mine", None, None).unwrap();
    mine.write_all(b"mine").unwrap();
    drop(mine);

    let refs = |s: &Store| -> Vec<String> {
        s.list_statuses(&[])
            .unwrap()
            .into_iter()
            .map(|s| s.ref_)
            .collect()
    };
    assert_eq!(refs(&containerd), ["containerd/mine"]);
    assert_eq!(refs(&store), ["containerd/mine", "containerd/shared-name"]);
    not_found(containerd.status("containerd/shared-name"));
    not_found(containerd.abort("containerd/shared-name"));
    denied(
        containerd
            .writer("containerd/shared-name", None, None)
            .map(drop),
    );
    assert_eq!(store.status("containerd/shared-name").unwrap().offset, 19);
    // Its own: resumed where it was.
    assert_eq!(containerd.status("containerd/mine").unwrap().offset, 4);
    let mut mine = containerd.writer("containerd/mine", None, None).unwrap();
    mine.write_all(b"!").unwrap();
    let digest = mine.commit(None, None, &[]).unwrap();
    assert_eq!(digest, sha256(b"mine!"));
    assert_eq!(containerd.info(&digest).unwrap().holders, ["containerd"]);
}

/// Snapshots belong to their holders: a confined caller builds on what it
/// holds (and that chain's parents) and changes only its own.
#[test]
fn confined_handles_own_only_their_snapshots() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let admin = store.snapshots();
    admin.prepare("base-work", None, &[]).unwrap();
    admin.commit("base", "base-work", &[]).unwrap();
    admin.prepare("theirs", Some("base"), &[]).unwrap();
    let layer = store.put(&kist_tests::tar_gz(&[])).unwrap();

    let containerd = store.confined_to("containerd");
    let mine = containerd.snapshots();
    not_found(mine.prepare("c1", Some("base"), &[]));
    not_found(mine.view("v1", Some("base"), &[]));
    for key in ["base", "theirs"] {
        not_found(mine.stat(key));
        not_found(mine.usage(key));
        not_found(mine.remove(key));
    }
    not_found(mine.mounts("theirs"));
    not_found(mine.commit("stolen", "theirs", &[]));
    let info = admin.stat("theirs").unwrap();
    not_found(mine.update(&info, &[]));
    not_found(mine.diff("theirs").map(drop));
    assert!(mine.walk(&[]).unwrap().is_empty());
    // Its own chain: its parents are seen, never changed.
    mine.prepare("c-work", None, &[]).unwrap();
    not_found(mine.apply(
        "c-work",
        &layer,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ));
    containerd.hold(&layer).unwrap();
    mine.apply(
        "c-work",
        &layer,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
    .unwrap();
    mine.commit("c-base", "c-work", &[]).unwrap();
    mine.prepare("c-top", Some("c-base"), &[]).unwrap();
    let names: Vec<String> = mine
        .walk(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["c-base", "c-top"]);
    assert_eq!(mine.stat("c-top").unwrap().holders, ["containerd"]);
    // The administrator's are all still there.
    let all: Vec<String> = admin
        .walk(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(all, ["base", "c-base", "c-top", "theirs"]);
}

/// Pushes `image` to `repository` as `tag` through the library's registry
/// (the component's registry rules, as over HTTP).
fn push(store: &Store, repository: &str, tag: &str, image: &kist_tests::oci::Image) {
    let registry = store.registry();
    for (i, blob) in image.blobs().enumerate() {
        let mut w = registry
            .open_upload(repository, &format!("upload{i:030}"), true)
            .unwrap();
        w.write_all(&blob.bytes).unwrap();
        w.commit(None, Some(&blob.digest), &[]).unwrap();
    }
    registry
        .put_manifest(repository, tag, kist_tests::oci::MANIFEST, &image.manifest)
        .unwrap();
}

/// Every call of containerd's Content and Snapshots services, made through
/// kist's socket against blobs, ingests and snapshots other holders own:
/// each is not found (or, for a write, refused), and nothing of theirs
/// changes. Before the fix, `Update` of a registry manifest's digest
/// cleared its labels (its tag answered 404, and a collection then took
/// its layers).
#[test]
fn containerd_calls_act_only_on_what_containerd_holds() {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
    use containerd_client::services::v1::snapshots::{
        CommitSnapshotRequest, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
        RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
        ViewSnapshotRequest,
    };
    use containerd_client::services::v1::{
        AbortRequest, DeleteContentRequest, InfoRequest, ListContentRequest, ListStatusesRequest,
        ReadContentRequest, StatusRequest, UpdateRequest, WriteAction, WriteContentRequest,
    };
    use tokio_stream::StreamExt;
    use tonic::Code;

    let h = Harness::new(open_embedded);
    let store = h.store();
    kist_tests::no_registry_graces(&store, 0);
    let image = kist_tests::oci::Image::new(&[b"layer".to_vec()], None);
    push(&store, "lib/app", "v1", &image);
    let private = store
        .put_with(b"kist's own", None, &[("app", "kist")])
        .unwrap();
    let mut ingest = store.writer("containerd/foreign", None, None).unwrap();
    ingest.write_all(b"default's ingest").unwrap();
    drop(ingest);
    let admin = store.snapshots();
    admin.prepare("base-work", None, &[]).unwrap();
    admin.commit("base", "base-work", &[]).unwrap();
    admin.prepare("theirs", Some("base"), &[]).unwrap();
    let socket = kist_tests::containerd::KistSocket::start(&h);

    on_socket(&socket, |channel| async {
        let mut content = ContentClient::new(channel.clone());
        let mut snaps = SnapshotsClient::new(channel);
        fn code<T>(r: Result<T, tonic::Status>) -> Code {
            r.map(drop).unwrap_err().code()
        }

        // Content: not seen, not changed.
        let read = ReadContentRequest {
            digest: private.clone(),
            ..Default::default()
        };
        assert_eq!(code(content.read(read).await), Code::NotFound);
        let delete = DeleteContentRequest {
            digest: private.clone(),
        };
        assert_eq!(code(content.delete(delete).await), Code::NotFound);
        let mut foreign = containerd_client::services::v1::Info {
            digest: image.digest.clone(),
            ..Default::default()
        };
        let update = |info| UpdateRequest {
            info: Some(info),
            update_mask: None,
        };
        assert_eq!(
            code(content.update(update(foreign.clone())).await),
            Code::NotFound
        );
        let mut listed = content
            .list(ListContentRequest { filters: vec![] })
            .await
            .unwrap()
            .into_inner();
        while let Some(batch) = listed.next().await {
            assert!(
                batch.unwrap().info.is_empty(),
                "containerd holds nothing yet"
            );
        }
        let status = StatusRequest {
            r#ref: "foreign".into(),
        };
        assert_eq!(code(content.status(status).await), Code::NotFound);
        let abort = AbortRequest {
            r#ref: "foreign".into(),
        };
        assert_eq!(code(content.abort(abort).await), Code::NotFound);
        let statuses = content
            .list_statuses(ListStatusesRequest { filters: vec![] })
            .await
            .unwrap()
            .into_inner();
        assert!(statuses.statuses.is_empty());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: "foreign".into(),
            data: b"overwrite".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut answers = content
            .write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = answers.next().await.unwrap();
        assert_eq!(first.unwrap_err().code(), Code::PermissionDenied);

        // containerd's shared policy: an Info adopts the manifest. Its
        // Update then changes containerd's labels only.
        let info = InfoRequest {
            digest: image.digest.clone(),
        };
        let adopted = content.info(info).await.unwrap().into_inner().info.unwrap();
        assert!(
            adopted.labels.is_empty(),
            "the registry's labels are its own"
        );
        foreign.labels = [("containerd.io/gc.root".to_owned(), "x".to_owned())].into();
        content.update(update(foreign)).await.unwrap();

        // Snapshots: none of the administrator's seen or changed.
        let prepare = PrepareSnapshotRequest {
            key: "c1".into(),
            parent: "base".into(),
            ..Default::default()
        };
        assert_eq!(code(snaps.prepare(prepare).await), Code::NotFound);
        let view = ViewSnapshotRequest {
            key: "v1".into(),
            parent: "base".into(),
            ..Default::default()
        };
        assert_eq!(code(snaps.view(view).await), Code::NotFound);
        for key in ["base", "theirs"] {
            let stat = StatSnapshotRequest {
                snapshotter: "kistsnap".into(),
                key: key.into(),
            };
            assert_eq!(code(snaps.stat(stat).await), Code::NotFound);
            let usage = UsageRequest {
                snapshotter: "kistsnap".into(),
                key: key.into(),
            };
            assert_eq!(code(snaps.usage(usage).await), Code::NotFound);
            let remove = RemoveSnapshotRequest {
                snapshotter: "kistsnap".into(),
                key: key.into(),
            };
            assert_eq!(code(snaps.remove(remove).await), Code::NotFound);
        }
        let mounts = MountsRequest {
            snapshotter: "kistsnap".into(),
            key: "theirs".into(),
        };
        assert_eq!(code(snaps.mounts(mounts).await), Code::NotFound);
        let commit = CommitSnapshotRequest {
            name: "stolen".into(),
            key: "theirs".into(),
            ..Default::default()
        };
        assert_eq!(code(snaps.commit(commit).await), Code::NotFound);
        let update = UpdateSnapshotRequest {
            snapshotter: "kistsnap".into(),
            info: Some(containerd_client::services::v1::snapshots::Info {
                name: "theirs".into(),
                labels: [("x".to_owned(), "y".to_owned())].into(),
                ..Default::default()
            }),
            update_mask: None,
        };
        assert_eq!(code(snaps.update(update).await), Code::NotFound);
        let mut listed = snaps
            .list(ListSnapshotsRequest::default())
            .await
            .unwrap()
            .into_inner();
        while let Some(batch) = listed.next().await {
            assert!(
                batch.unwrap().info.is_empty(),
                "containerd holds no snapshot"
            );
        }
    });
    drop(socket);

    // Everything of the others is as it was, the registry's manifest
    // included: its tag resolves, its labels are the registry's, and a
    // collection keeps what it references.
    assert_eq!(store.info(&private).unwrap().holders, ["default"]);
    assert_eq!(labels_of(&store, &private), pairs(&[("app", "kist")]));
    assert_eq!(store.status("containerd/foreign").unwrap().offset, 16);
    let registry = store.registry();
    assert_eq!(
        registry.get_manifest("lib/app", "v1").unwrap().digest,
        image.digest
    );
    collect(&store);
    for blob in image.blobs() {
        assert_eq!(
            registry.stat_blob("lib/app", &blob.digest).unwrap(),
            blob.bytes.len() as u64
        );
    }
    let all: Vec<String> = admin
        .walk(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(all, ["base", "theirs"]);
}

/// A blob purged, or released by containerd, is not served any more
/// through the readers the containerd plugin keeps open between its 32 KiB
/// `Read` calls (issue 27, item 12: a purged blob stayed readable), and
/// the `Info` it answers beside them without asking the component shows a
/// label changed meanwhile and `NotFound` once the blob is gone (issue 28).
#[test]
fn kept_readers_stop_serving_what_is_purged_or_released() {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{DeleteContentRequest, InfoRequest, ReadContentRequest};
    use tokio_stream::StreamExt;

    let h = Harness::new(open_embedded);
    let store = h.store();
    let containerd = store.confined_to("containerd");
    let data = kist_tests::bytes(256 << 10, 7);
    let purged = containerd.put(&data).unwrap();
    let released = containerd.put(&data[1..]).unwrap();
    let socket = kist_tests::containerd::KistSocket::start(&h);
    on_socket(&socket, |channel| async {
        let mut content = ContentClient::new(channel);
        async fn read(
            c: &mut ContentClient<tonic::transport::Channel>,
            digest: &str,
            offset: i64,
        ) -> Result<Vec<u8>, tonic::Status> {
            let request = ReadContentRequest {
                digest: digest.into(),
                offset,
                size: 32 << 10,
            };
            let mut stream = c.read(request).await?.into_inner();
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend(chunk?.data);
            }
            Ok(out)
        }
        async fn info(
            c: &mut ContentClient<tonic::transport::Channel>,
            digest: &str,
        ) -> Result<std::collections::HashMap<String, String>, tonic::Status> {
            let request = InfoRequest {
                digest: digest.into(),
            };
            Ok(c.info(request).await?.into_inner().info.unwrap().labels)
        }
        for digest in [&purged, &released] {
            assert!(info(&mut content, digest).await.unwrap().is_empty());
            assert_eq!(read(&mut content, digest, 0).await.unwrap().len(), 32 << 10);
            assert!(info(&mut content, digest).await.unwrap().is_empty());
        }
        // A label containerd changes shows at once; one another process
        // changes, within a second (the library may not run inside this
        // runtime: it changes it beside it).
        let labelled = |value: &str| {
            let labels = [("app".to_owned(), value.to_owned())];
            containerd_client::services::v1::Info {
                digest: purged.clone(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            }
        };
        let update = containerd_client::services::v1::UpdateRequest {
            info: Some(labelled("v2")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels.app".into()],
            }),
        };
        content.update(update).await.unwrap();
        let labels = info(&mut content, &purged).await.unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("v2"));
        let beside = |f: &(dyn Fn() + Sync)| std::thread::scope(|s| s.spawn(f).join().unwrap());
        beside(&|| {
            let mut changed = containerd.info(&purged).unwrap();
            changed.labels = vec![kist::Label {
                key: "app".into(),
                value: "v3".into(),
            }];
            containerd.update(&changed, &["labels.app"]).unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let labels = info(&mut content, &purged).await.unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("v3"));
        beside(&|| {
            store.purge(&purged).unwrap();
        });
        let delete = DeleteContentRequest {
            digest: released.clone(),
        };
        content.delete(delete).await.unwrap();
        // (An Info of the released blob would adopt it again, as under
        // containerd's shared policy: only the purged one is asked.)
        let gone = info(&mut content, &purged).await;
        assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
        for digest in [&purged, &released] {
            let again = read(&mut content, digest, 32 << 10).await;
            assert_eq!(again.unwrap_err().code(), tonic::Code::NotFound, "{digest}");
        }
    });
}

/// The first byte of sha256(`name`): what picked a lock's stripe file
/// before locks became one per name.
fn stripe(name: &str) -> u8 {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes())[0]
}

/// Nested locks whose names collide on what used to be one of 256 stripe
/// files neither wait on themselves nor fail (issue 27, item 8: a manifest
/// delete held `index.json` and then waited 10 s on `blob/<digest>` of its
/// own stripe, 429 every time, for 1 manifest in 256; a lease delete did
/// the same with its blobs).
#[test]
fn locks_on_colliding_names_neither_deadlock_nor_contend() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let index = stripe("index.json");
    let image = (0u64..)
        .map(|seed| kist_tests::oci::Image::new(&[kist_tests::bytes(64, seed)], None))
        .find(|i| stripe(&format!("blob/{}", i.digest)) == index)
        .unwrap();
    push(&store, "lib/app", "v1", &image);
    let started = std::time::Instant::now();
    store
        .registry()
        .delete_manifest("lib/app", &image.digest)
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the delete waited on its own lock"
    );
    let gone = store.registry().get_manifest("lib/app", "v1");
    assert!(matches!(
        gone,
        Err(Error::Registry(kist::RegistryError::ManifestUnknown))
    ));

    let blob = store.put(b"leased").unwrap();
    let id = (0u64..)
        .map(|n| format!("lease-{n}"))
        .find(|id| stripe(&format!("lease/{id}")) == stripe(&format!("blob/{blob}")))
        .unwrap();
    let lease = store.leases().create(Some(&id), None, &[]).unwrap();
    store.with_lease(&lease.id).hold(&blob).unwrap();
    store.leases().delete(&lease.id).unwrap();
    assert_eq!(store.info(&blob).unwrap().holders, ["default"]);
}

// --- One admission layer for every server ------------------------------

/// The attacks below load the machine: one at a time, so that each
/// measures its server rather than the other's.
static ATTACKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A TCP connection to `addr` from 127.0.0.`from`: each hostile client
/// its own address.
fn connect_from(from: u8, addr: &str) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let local = std::net::SocketAddr::from(([127, 0, 0, from], 0));
    socket.bind(&local.into())?;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Sends `head` (a request line and headers) and `body` from
/// 127.0.0.`from`; the connection, left unread. `None` if the server
/// refused it (an address has only so many connections).
fn send_from(from: u8, addr: &str, head: &str, body: &[u8]) -> Option<std::net::TcpStream> {
    use std::io::Write;
    let mut s = connect_from(from, addr).ok()?;
    s.write_all(format!("{head}Host: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    s.write_all(body).ok()?;
    Some(s)
}

/// Checks what `kist serve` (process `pid`) holds under attack: under
/// 1.25 GiB resident (its 768 MiB memory budget, what the allocator keeps
/// of memory freed as transfers are cut, and its own) and fewer than 600
/// threads (tokio's blocking pool tops out at 512); prints both.
fn assert_bounded(pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    };
    let (rss, threads) = (field("VmRSS:") * 1024, field("Threads:"));
    eprintln!(
        "kist serve under attack: {} MiB, {threads} threads",
        rss >> 20
    );
    assert!(rss < 1280 << 20, "kist serve grew to {} MiB", rss >> 20);
    assert!(threads < 600, "{threads} threads");
}

/// Checks that a fresh client's request under attack was served, and says
/// how fast. Alone on this machine each takes well under 1 s (the issue's
/// mark; see the README's "Admission"); the test allows 10 s, because the
/// rest of the suite may be loading both cores meanwhile, and a starved
/// client (refused, or waiting on the attackers) would take far longer.
fn served_in_time(what: &str, seconds: f64) {
    eprintln!("fresh client under attack: {what} in {seconds:.3} s");
    assert!(seconds < 10.0, "{what} took {seconds} s");
}

/// `curl` from 127.0.0.`from` with `args`: the status code and the
/// request's own time (curl's `time_total`: not its start-up).
fn curl_from(from: u8, args: &[&str]) -> (u16, f64) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
        .args(["--interface", &format!("127.0.0.{from}")])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, time) = text.split_once(' ').unwrap();
    (code.parse().unwrap(), time.parse().unwrap())
}

/// The HTTP server (artifacts and the registry) under attack from 20
/// addresses at once, each with stalled downloads of a 32 MiB artifact,
/// stalled GETs of a 4 MiB manifest, manifest PUTs that stop short and
/// uploads trickling a byte a second: a client from another address
/// still pushes and pulls, each request served (within 1 s when the test
/// runs alone: see `served_in_time`); `kist serve`
/// stays under 1.25 GiB (its 768 MiB memory budget and its own) with a
/// bounded number of threads; the trickling uploads are cut. Before:
/// 1,000 stalled manifest GETs took 4.1 GiB (item 2), 64 trickling
/// uploads locked every other push out (item 3), and 17 addresses of
/// stalled downloads got every client a 503 (item 14).
#[test]
fn http_admission_serves_fresh_clients_beside_hostile_ones() {
    let _one = ATTACKS.lock().unwrap_or_else(|e| e.into_inner());
    let h = Harness::new(open_embedded);
    let store = h.store();
    let artifact = store.put(&kist_tests::bytes(32 << 20, 6)).unwrap();
    store
        .storer()
        .reconcile_artifact(
            &kist::Object::new("Bucket", "ns", "b", "u"),
            "r",
            "big.bin",
            kist::Source::Blob(&artifact),
            &[],
        )
        .unwrap();
    let config = b"{}".to_vec();
    let mut w = store
        .registry()
        .open_upload("lib/app", &"c".repeat(32), true)
        .unwrap();
    w.write_all(&config).unwrap();
    w.commit(None, Some(&sha256(&config)), &[]).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kist_tests::oci::MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [],
        "annotations": {"pad": "x".repeat(4_000_000)},
    })
    .to_string();
    store
        .registry()
        .put_manifest(
            "lib/app",
            "big",
            kist_tests::oci::MANIFEST,
            manifest.as_bytes(),
        )
        .unwrap();
    let server = kist_tests::Server::start(h.path());
    let addr = server.base.trim_start_matches("http://").to_owned();

    let mut held = Vec::new();
    let mut tricklers = Vec::new();
    for from in 10..30u8 {
        for _ in 0..20 {
            let get = "GET /bucket/ns/b/big.bin HTTP/1.1\r\n";
            held.extend(send_from(from, &addr, get, b""));
        }
        for _ in 0..10 {
            let get = "GET /v2/lib/app/manifests/big HTTP/1.1\r\n";
            held.extend(send_from(from, &addr, get, b""));
        }
        for _ in 0..5 {
            let put = format!(
                "PUT /v2/lib/app/manifests/short HTTP/1.1\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                kist_tests::oci::MANIFEST,
                (4 << 20) - 1
            );
            held.extend(send_from(from, &addr, &put, &vec![b' '; 1 << 20]));
        }
        for i in 0..5 {
            let upload = format!("{from:016x}{i:016x}");
            let _ = store
                .registry()
                .open_upload("lib/app", &upload, true)
                .unwrap();
            let patch = format!(
                "PATCH /v2/lib/app/blobs/uploads/{upload} HTTP/1.1\r\nContent-Length: 1048576\r\n"
            );
            tricklers.extend(send_from(from, &addr, &patch, b"x"));
        }
    }
    assert!(
        held.len() > 200 && tricklers.len() == 100,
        "{} {}",
        held.len(),
        tricklers.len()
    );
    // The trickle: a byte a second on each upload, until the server cuts it.
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let trickle = {
        let cut = std::sync::Arc::clone(&cut);
        std::thread::spawn(move || {
            use std::io::Write;
            let mut live = tricklers;
            for _ in 0..40 {
                std::thread::sleep(std::time::Duration::from_secs(1));
                live.retain_mut(|s| s.write_all(b"x").is_ok());
                cut.store(100 - live.len(), std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_secs(3));

    // A fresh client, from an address of its own.
    let url = |path: &str| format!("{}/{path}", server.base);
    let blob = kist_tests::bytes(1 << 20, 99);
    let file = h.path().parent().unwrap().join("fresh.bin");
    std::fs::write(&file, &blob).unwrap();
    let digest = sha256(&blob);
    let push = url(&format!("v2/fresh/app/blobs/uploads/?digest={digest}"));
    for (what, args, expect) in [
        ("base", vec![url("v2/")], 200),
        (
            "push",
            vec![
                "-X".into(),
                "POST".into(),
                "--data-binary".into(),
                format!("@{}", file.display()),
                push,
            ],
            201,
        ),
        (
            "blob",
            vec![url(&format!("v2/fresh/app/blobs/{digest}"))],
            200,
        ),
        ("manifest", vec![url("v2/lib/app/manifests/big")], 200),
        ("artifact", vec![url("bucket/ns/b/big.bin")], 200),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, seconds) = curl_from(2, &args);
        assert_eq!(code, expect, "{what}");
        served_in_time(what, seconds);
    }
    assert_bounded(server.pid());
    trickle.join().unwrap();
    assert_eq!(
        cut.load(std::sync::atomic::Ordering::SeqCst),
        100,
        "trickling uploads not cut"
    );
    drop(held);
}

/// The containerd socket under attack: 600 `Read` streams of a 64 MiB
/// blob that are never read, on 10 connections, and `Write` streams
/// trickling a byte a second: a fresh connection still reads and writes,
/// and the HTTP registry beside it answers (each within 1 s alone, see
/// `served_in_time`); `kist serve`
/// stays under 1.25 GiB with a bounded number of threads, and the trickles
/// are cut. Before: 516 threads, 5.5 GB and an HTTP registry that answered
/// nothing for 15 s (item 5).
#[test]
fn grpc_admission_serves_fresh_clients_beside_hostile_ones() {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{ReadContentRequest, WriteAction, WriteContentRequest};
    use tokio_stream::StreamExt;

    let _one = ATTACKS.lock().unwrap_or_else(|e| e.into_inner());
    let h = Harness::new(open_embedded);
    let blob = kist_tests::bytes(64 << 20, 8);
    let digest = h
        .store()
        .confined_to("containerd")
        .put_with(&blob, None, &[])
        .unwrap();
    let socket = h.path().parent().unwrap().join("kist.sock");
    let socket_arg = socket.to_str().unwrap();
    let server = kist_tests::Server::start_with(
        h.path(),
        &["--containerd", socket_arg, "--gc-interval", "0s"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let connect = || containerd_client::connect(&socket);
        let read = |d: &str, size: i64| ReadContentRequest {
            digest: d.to_owned(),
            offset: 0,
            size,
        };
        // 600 reads of the whole blob, never read.
        let mut unread = Vec::new();
        for _ in 0..10 {
            let mut c = ContentClient::new(connect().await.unwrap());
            for _ in 0..60 {
                // Past the budgets, refused (or admitted by cutting another).
                if let Ok(s) = c.read(read(&digest, 0)).await {
                    unread.push(s.into_inner());
                }
            }
        }
        // Writes that trickle a byte a second.
        let mut trickles = Vec::new();
        for i in 0..5 {
            let mut c = ContentClient::new(connect().await.unwrap());
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let answers = c
                .write(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            tokio::spawn(async move {
                for offset in 0..60i64 {
                    let message = WriteContentRequest {
                        action: WriteAction::Write as i32,
                        r#ref: format!("trickle-{i}"),
                        offset,
                        data: b"x".to_vec(),
                        ..Default::default()
                    };
                    if tx.send(message).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            });
            trickles.push(answers);
        }
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;

        // A fresh connection reads 2 MiB, writes 1 MiB; HTTP answers.
        let started = std::time::Instant::now();
        let mut fresh = ContentClient::new(connect().await.unwrap());
        let mut stream = fresh
            .read(read(&digest, 2 << 20))
            .await
            .unwrap()
            .into_inner();
        let mut got = 0;
        while let Some(chunk) = stream.next().await {
            got += chunk.unwrap().data.len();
        }
        assert_eq!(got, 2 << 20);
        served_in_time("read", started.elapsed().as_secs_f64());
        let data = kist_tests::bytes(1 << 20, 9);
        let started = std::time::Instant::now();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: "fresh".into(),
            data: data.clone(),
            total: data.len() as i64,
            expected: sha256(&data),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut answers = fresh
            .write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let committed = answers.next().await.unwrap().unwrap();
        assert_eq!(committed.digest, sha256(&data));
        served_in_time("write", started.elapsed().as_secs_f64());
        let (code, seconds) = curl_from(2, &[&format!("{}/v2/", server.base)]);
        assert_eq!(code, 200);
        served_in_time("the registry", seconds);

        assert_bounded(server.pid());

        // The trickles are cut (the minimum rate, past its grace), their
        // connections with them, well before they would have finished.
        for mut answers in trickles {
            let ended = tokio::time::timeout(std::time::Duration::from_secs(40), async {
                while let Some(answer) = answers.next().await {
                    if let Err(status) = answer {
                        return Some(status);
                    }
                }
                None
            })
            .await
            .expect("a trickling write was never cut");
            assert!(ended.is_some(), "a trickling write ended without an error");
        }
        drop(unread);
    });
}

/// A `Write` message larger than the socket takes ends the stream with an
/// error, not with OK and no answer (a small item of issue 27).
#[test]
fn an_oversized_write_message_is_an_error() {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{WriteAction, WriteContentRequest};
    use tokio_stream::StreamExt;

    let h = Harness::new(open_embedded);
    let socket = kist_tests::containerd::KistSocket::start(&h);
    on_socket(&socket, |channel| async {
        let mut content = ContentClient::new(channel).max_encoding_message_size(64 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: "big".into(),
            data: vec![0; 20 << 20],
            ..Default::default()
        })
        .await
        .unwrap();
        let answer = match content
            .write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(answers) => answers.into_inner().next().await,
            Err(status) => Some(Err(status)),
        };
        let status = answer.expect("an answer").unwrap_err();
        assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
        drop(tx);
    });
}

/// Removing a snapshot stops at a bind mount inside its tree, of the same
/// filesystem as the store (same device: before, only devices were
/// compared, and `kist snapshot rm` deleted the mounted directory's
/// files, item 6); the tree stays for `cleanup` once it is unmounted.
#[test]
fn snapshot_removal_stops_at_a_bind_mount_of_the_same_filesystem() {
    kist_tests::trees::require_root();
    let h = Harness::new(open_embedded);
    let store = h.store();
    let victim = h.path().parent().unwrap().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let mounts = store.snapshots().prepare("work", None, &[]).unwrap();
    let tree = std::path::PathBuf::from(&mounts[0].source);
    std::fs::create_dir(tree.join("mnt")).unwrap();
    let bind = kist::mount::Mount {
        type_: "bind".into(),
        source: victim.to_str().unwrap().into(),
        options: vec!["rbind".into(), "rw".into()],
    };
    let mounted = kist_tests::trees::Mounted::at(&[bind], &tree.join("mnt"));
    let out = kist_at(h.path(), &["snapshot", "rm", "work"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me"
    );
    not_found(store.snapshots().stat("work"));
    drop(mounted);
    assert_eq!(store.snapshots().cleanup().unwrap(), 1);
    assert!(!tree.exists());
    assert_eq!(
        std::fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me"
    );
}

// --- The registry's input, as the conformance suite sends it ------------

/// A chunk whose `Content-Range` does not fit the upload is refused with
/// 416 and the upload's `Range` as it was, whatever part is wrong: a
/// closing `PUT` whose range does not start at the offset (item 7: its
/// bytes were appended at the offset, and the upload was corrupt), a
/// range ending before it starts, a `Content-Length` or a body of another
/// length than the range (cut back off). The good chunk after them
/// completes the blob. A monolithic `POST` with bytes of another digest
/// leaves no upload behind, and `tags/list` takes any `n`.
#[test]
fn chunk_ranges_are_checked_whole_and_leave_the_upload_as_it_was() {
    use kist_tests::http::{body, fetch, send};
    let h = Harness::new(open_embedded);
    let server = kist_tests::Server::start(h.path());
    let data = kist_tests::bytes(2048, 11);
    let digest = sha256(&data);
    let r = send(ureq::post(&server.url("v2/app/blobs/uploads/")), b"");
    assert_eq!(r.status(), 202);
    let location = server.url(r.header("location").unwrap().trim_start_matches('/'));
    let chunk = |method: &str, url: &str, range: &str, bytes: &[u8]| {
        send(
            ureq::request(method, url).set("Content-Range", range),
            bytes,
        )
    };
    let r = chunk("PATCH", &location, "0-1023", &data[..1024]);
    assert_eq!((r.status(), r.header("range")), (202, Some("0-1023")));
    let put = format!("{location}?digest={digest}");
    for (method, url, range, bytes) in [
        ("PUT", put.as_str(), "2048-3066", &data[1024..2043]),
        ("PATCH", location.as_str(), "5-2", &data[..4]),
        ("PATCH", location.as_str(), "1024-1026", &data[1024..1034]),
        ("PUT", put.as_str(), "1024-2047", &data[1024..2000]),
    ] {
        let r = chunk(method, url, range, bytes);
        assert_eq!(r.status(), 416, "{method} {range}");
        assert_eq!(r.header("range"), Some("0-1023"), "{method} {range}");
        let status = fetch(ureq::get(&location));
        assert_eq!(
            status.header("range"),
            Some("0-1023"),
            "after {method} {range}"
        );
    }
    // A body shorter than its range, sent without a length, is cut back.
    {
        use std::io::{Read, Write};
        let addr = server.base.trim_start_matches("http://");
        let path = location.trim_start_matches(&server.base);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Range: 1024-2047\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n"
        )
        .unwrap();
        s.write_all(&data[1024..1040]).unwrap();
        s.write_all(b"\r\n0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 416"), "{answer}");
        let status = fetch(ureq::get(&location));
        assert_eq!(status.header("range"), Some("0-1023"));
    }
    let r = chunk("PUT", &put, "1024-2047", &data[1024..]);
    assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body(r)));
    let got = body(fetch(ureq::get(
        &server.url(&format!("v2/app/blobs/{digest}")),
    )));
    assert_eq!(got, data);

    let wrong = server.url(&format!(
        "v2/app/blobs/uploads/?digest={}",
        sha256(b"other")
    ));
    assert_eq!(send(ureq::post(&wrong), b"these bytes").status(), 400);
    assert!(
        h.store().list_statuses(&[]).unwrap().is_empty(),
        "an upload was left"
    );
    let tags = fetch(ureq::get(&server.url("v2/app/tags/list?n=99999999999")));
    assert_ne!(tags.status(), 400);
}

/// `kist serve --containerd PATH` replaces a stale socket only, never a
/// regular file; the socket it makes is private whatever the umask, and
/// nothing of its making is left beside it (items 13 and a small one).
#[test]
fn the_containerd_socket_is_private_and_replaces_only_a_stale_socket() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new(open_embedded);
    let dir = h.path().parent().unwrap();
    let path = dir.join("kist.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let serve = |path: &std::path::Path| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg("umask 000; exec \"$0\" --store \"$1\" serve --no-http --containerd \"$2\"")
            .arg(kist_tests::kist_bin())
            .arg(h.path())
            .arg(path)
            .env_remove("KIST_STORE");
        c
    };
    let out = serve(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a socket"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    std::fs::remove_file(&path).unwrap();
    // A stale socket (its server killed) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut child = serve(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("unix://"), "{line}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let beside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".kist-socket"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

// --- Quotas -------------------------------------------------------------

/// What writers reserve survives a recount: three ingests declaring 8 MiB
/// each under a 10 MiB quota, the second one opened after the first (so
/// it evicts and counts exactly), get one place, not three (item 9).
#[test]
fn reservations_survive_recounts() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    store
        .retention()
        .set_quota(None, kist::Limit::Bytes(10 << 20))
        .unwrap();
    let open = |r: &str| store.writer(r, Some(8 << 20), None);
    let first = open("one").unwrap();
    for r in ["two", "three"] {
        let refused = open(r).map(drop);
        assert!(
            matches!(refused, Err(Error::NoSpace(_))),
            "{r}: {refused:?}"
        );
    }
    drop(first);
}

/// A new hold counts against the holder's quota as a write does: a mount
/// into a repository whose quota it would cross, and a `hold` past a
/// holder's, are refused with `no-space` and hold nothing (item 9: a
/// repository went over its quota by mounts, then every push failed).
#[test]
fn new_holds_are_charged_to_their_holder() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    store
        .retention()
        .set_quota(Some("registry/small"), kist::Limit::Bytes(1 << 20))
        .unwrap();
    let big = kist_tests::bytes(2 << 20, 12);
    let digest = sha256(&big);
    let registry = store.registry();
    let mut w = registry.open_upload("big", &"b".repeat(32), true).unwrap();
    w.write_all(&big).unwrap();
    w.commit(None, Some(&digest), &[]).unwrap();
    let mounted = registry.mount_blob("small", "big", &digest);
    assert!(matches!(mounted, Err(Error::NoSpace(_))), "{mounted:?}");
    assert!(registry.stat_blob("small", &digest).is_err());
    store
        .retention()
        .set_quota(Some("capped"), kist::Limit::Bytes(1 << 20))
        .unwrap();
    let held = store.as_holder("capped").hold(&digest);
    assert!(matches!(held, Err(Error::NoSpace(_))), "{held:?}");
    assert!(
        !store
            .info(&digest)
            .unwrap()
            .holders
            .contains(&"capped".to_owned())
    );
    // Within the quota, a hold is taken.
    let small = store.put(&kist_tests::bytes(100 << 10, 13)).unwrap();
    store.as_holder("capped").hold(&small).unwrap();
}

/// A referrer its only repository deleted is collected with what only it
/// kept, its subject still stored (item 11: it was kept forever, counted
/// against that repository's quota).
#[test]
fn a_deleted_referrer_is_not_kept_by_its_subject() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    kist_tests::no_registry_graces(&store, 0);
    let subject = kist_tests::oci::Image::new(&[b"subject".to_vec()], None);
    push(&store, "app", "v1", &subject);
    let size = subject.manifest.len();
    let referrer =
        kist_tests::oci::Image::new(&[b"signature".to_vec()], Some((&subject.digest, size)));
    push(&store, "app", "sig", &referrer);
    let registry = store.registry();
    registry.delete_manifest("app", &referrer.digest).unwrap();
    collect(&store);
    let stored = |d: &str| h.path().join("blobs/sha256").join(&d[7..]).exists();
    assert!(!stored(&referrer.digest), "the referrer is still stored");
    assert!(
        !stored(&referrer.layers[0].digest),
        "its layer is still stored"
    );
    assert!(stored(&subject.digest));
    assert_eq!(
        registry.get_manifest("app", "v1").unwrap().digest,
        subject.digest
    );
    let page = registry
        .referrers("app", &subject.digest, None, None, 1 << 20)
        .unwrap();
    assert!(page.descriptors.is_empty());
}

/// What `kist serve` says on stderr once it listens, and its exit status.
fn serve_says(store: &std::path::Path, args: &[&str]) -> (String, String) {
    let mut child = std::process::Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(store)
        .arg("serve")
        .args(args)
        .env_remove("KIST_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    (line, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `kist serve` warns with the address it bound (not `:0`), warns when
/// passwords would cross the network in cleartext, and a busy port's
/// error names the address (small items of issue 27).
#[test]
fn serve_warns_with_the_address_it_listens_on() {
    let h = Harness::new(open_embedded);
    let (line, said) = serve_says(h.path(), &["--addr", "127.0.0.1:0"]);
    let bound = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_start_matches("http://");
    assert!(
        said.contains(&format!("whoever reaches {bound} may")),
        "{said}"
    );
    let htpasswd = h.path().parent().unwrap().join("htpasswd");
    std::fs::write(&htpasswd, format!("u:{}\n", bcrypt::hash("p", 4).unwrap())).unwrap();
    let file = htpasswd.to_str().unwrap();
    let (_, said) = serve_says(h.path(), &["--addr", "0.0.0.0:0", "--htpasswd", file]);
    assert!(said.contains("cleartext"), "{said}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = kist_at(h.path(), &["serve", "--addr", &addr]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&addr) && said.contains("in use"), "{said}");
}

/// A manifest deleted through the blobs endpoint takes its tags with it:
/// no tag is listed that answers 404 (a small item of issue 27).
#[test]
fn deleting_a_manifest_as_a_blob_removes_its_tags() {
    use kist_tests::http::{body, fetch};
    let h = Harness::new(open_embedded);
    let store = h.store();
    let image = kist_tests::oci::Image::new(&[b"layer".to_vec()], None);
    push(&store, "app", "v1", &image);
    let server = kist_tests::Server::start(h.path());
    let url = server.url(&format!("v2/app/blobs/{}", image.digest));
    assert_eq!(fetch(ureq::delete(&url)).status(), 202);
    let tags = body(fetch(ureq::get(&server.url("v2/app/tags/list"))));
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert!(
        tags["tags"].as_array().is_none_or(|t| t.is_empty()),
        "{tags}"
    );
    let tag = fetch(ureq::get(&server.url("v2/app/manifests/v1")));
    assert_eq!(tag.status(), 404);
}

/// A commit for a lease that ended while the data was written fails, and
/// says why: the blob would be kept by nothing (a small item of issue 27:
/// `ingest --lease` exited 0 with its blob already unreachable).
#[test]
fn a_commit_for_an_expired_lease_fails() {
    let h = Harness::new(open_embedded);
    let clock = kist_tests::FakeClock::new();
    let store = clock.open(h.path());
    let lease = store
        .leases()
        .create(Some("short"), Some(std::time::Duration::from_secs(10)), &[])
        .unwrap();
    let mut w = store
        .with_lease(&lease.id)
        .writer("leased", None, None)
        .unwrap();
    w.write_all(b"written under a lease").unwrap();
    clock.advance(std::time::Duration::from_secs(20));
    match w.commit(None, None, &[]) {
        Err(Error::FailedPrecondition(why)) => assert!(why.contains("short"), "{why}"),
        other => panic!("{other:?}"),
    }
    not_found(store.info(&sha256(b"written under a lease")));
}

/// The CLI on a fresh store and with things that are not there (small
/// items of issue 27): `config set`, `quota set` and `lease create` make
/// the store as `ingest` does; a not-found names what was not found; an
/// ingest of a directory or through a missing lease leaves no ingest and
/// names the directory or the lease.
#[test]
fn the_cli_names_what_it_did_not_find_and_creates_stores_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let kist = |store: &str, args: &[&str]| kist_at(&dir.path().join(store), args);
    for (store, args) in [
        ("a", vec!["config", "set", "cache-ttl", "1h"]),
        ("b", vec!["quota", "set", "10M"]),
        ("c", vec!["lease", "create", "--id", "l1"]),
    ] {
        let out = kist(store, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            dir.path().join(store).join("oci-layout").exists(),
            "{args:?}"
        );
    }
    let missing = sha256(b"not stored");
    let out = kist("a", &["info", &missing]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&missing) && said.contains("not found"),
        "{said}"
    );
    let out = kist("a", &["snapshot", "info", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot \"nope\""),
        "{out:?}"
    );
    let out = kist("a", &["ingest", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a directory"),
        "{out:?}"
    );
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let out = kist("a", &["ingest", "--lease", "nope", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lease \"nope\""),
        "{out:?}"
    );
    let store = kist::Store::open(dir.path().join("a")).unwrap();
    assert!(store.list_statuses(&[]).unwrap().is_empty());
}

/// Manifest pushes that move tags never fail while collections loop (a
/// small item of issue 27: 3 to 8 in 800 answered 429 "locked by another
/// writer", each waiting on a lock stripe it held itself).
#[test]
fn tag_moves_beside_looping_collections_never_fail() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let base = kist_tests::oci::Image::new(&[b"base".to_vec()], None);
    push(&store, "app", "seed", &base);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failures = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let store = h.store();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                collect(&store);
            }
        });
        let mut failures = Vec::new();
        for i in 0..400u32 {
            let image = kist_tests::oci::Image::new(&[i.to_le_bytes().to_vec()], None);
            let registry = store.registry();
            for blob in image.blobs() {
                let mut w = registry
                    .open_upload("app", &format!("{i:016x}{:016x}", blob.bytes.len()), true)
                    .unwrap();
                w.write_all(&blob.bytes).unwrap();
                if let Err(e) = w.commit(None, Some(&blob.digest), &[]) {
                    failures.push(format!("blob {i}: {e}"));
                }
            }
            let tag = format!("t{}", i % 8);
            if let Err(e) =
                registry.put_manifest("app", &tag, kist_tests::oci::MANIFEST, &image.manifest)
            {
                failures.push(format!("manifest {i}: {e}"));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        collector.join().unwrap();
        failures
    });
    assert!(failures.is_empty(), "{failures:?}");
}

/// `snapshot mount` refuses a target inside the store, `snapshot umount`
/// unmounts only the store's snapshots, and `snapshot rm` refuses a
/// mounted snapshot (small items of issue 27).
#[test]
fn snapshot_mounts_stay_out_of_the_store_and_off_other_mounts() {
    kist_tests::trees::require_root();
    let h = Harness::new(open_embedded);
    let snapshots = h.store().snapshots();
    snapshots.prepare("work", None, &[]).unwrap();
    let inside = h.path().join("blobs/sha256");
    assert!(matches!(
        snapshots.mount("work", &inside),
        Err(Error::InvalidArgument(_))
    ));
    let target = tempfile::tempdir().unwrap();
    snapshots.mount("work", target.path()).unwrap();
    let rm = snapshots.remove("work");
    assert!(matches!(rm, Err(Error::FailedPrecondition(_))), "{rm:?}");
    // Another mount is not the store's to unmount.
    let other = tempfile::tempdir().unwrap();
    let tmpfs = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(other.path())
        .status()
        .unwrap();
    assert!(tmpfs.success());
    let refused = snapshots.unmount(other.path());
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    let still = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(still.contains(other.path().to_str().unwrap()));
    kist::mount::unmount(other.path()).unwrap();
    snapshots.unmount(target.path()).unwrap();
    snapshots.remove("work").unwrap();
}

/// `snapshot diff` writes only what `apply` takes back: a device node or a
/// name that is not UTF-8 in the tree is refused, naming it, instead of a
/// layer the round trip cannot apply (a small item of issue 27).
#[test]
fn diff_refuses_what_apply_would_refuse() {
    use std::os::unix::ffi::OsStrExt;
    kist_tests::trees::require_root();
    let h = Harness::new(open_embedded);
    let snapshots = h.store().snapshots();
    let mounts = snapshots.prepare("names", None, &[]).unwrap();
    let tree = std::path::PathBuf::from(&mounts[0].source);
    std::fs::write(tree.join(std::ffi::OsStr::from_bytes(b"bad-\xff")), "x").unwrap();
    match snapshots.diff("names") {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("not UTF-8"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mounts = snapshots.prepare("devices", None, &[]).unwrap();
    let tree = std::path::PathBuf::from(&mounts[0].source);
    let made = std::process::Command::new("mknod")
        .arg(tree.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    match snapshots.diff("devices") {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("device node"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// The CLI's small wording defects of issue 27: the version is the WIT's,
/// `gc --dry-run` says what it would remove, `artifact ls` shows URLs (on
/// `kist serve`'s port), and an origin without a scheme says what to
/// write.
#[test]
fn the_cli_says_what_it_means() {
    let h = Harness::new(open_embedded);
    let kist = |args: &[&str]| kist_at(h.path(), args);
    let version = kist(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let store = h.store();
    let d = store.put(b"released").unwrap();
    store.delete(&d).unwrap();
    let gc = kist(&["gc", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("1 would be removed"),
        "{gc:?}"
    );
    let blob = store.put(b"an artifact").unwrap();
    store
        .storer()
        .reconcile_artifact(
            &kist::Object::new("Bucket", "ns", "b", "u"),
            "r",
            "a.txt",
            kist::Source::Blob(&blob),
            &[],
        )
        .unwrap();
    let ls = kist(&["artifact", "ls"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("http://localhost:9090/bucket/ns/b/a.txt"),
        "{ls:?}"
    );
    let desired = h.path().parent().unwrap().join("desired.json");
    std::fs::write(&desired, "[]").unwrap();
    let apply = kist(&[
        "layer",
        "apply",
        desired.to_str().unwrap(),
        "--allow-origin",
        "127.0.0.1:8088",
    ]);
    let said = String::from_utf8_lossy(&apply.stderr);
    assert!(said.contains("http://127.0.0.1:8088"), "{said}");
}

/// A referrers index is paged by its size: 20 referrers of 1 MiB of
/// annotations each come in pages of at most 4 MiB, each with a `Link` to
/// the next, and following them gives every referrer once (item 2: one
/// 79 MiB response per request, which 30 stalled clients made 2.7 GB).
#[test]
fn referrers_come_in_bounded_pages() {
    use kist_tests::http::{body, fetch, next_page};
    let h = Harness::new(open_embedded);
    let store = h.store();
    let subject = kist_tests::oci::Image::new(&[b"subject".to_vec()], None);
    push(&store, "app", "v1", &subject);
    let config = b"{}".to_vec();
    let mut w = store
        .registry()
        .open_upload("app", &"f".repeat(32), true)
        .unwrap();
    w.write_all(&config).unwrap();
    w.commit(None, Some(&sha256(&config)), &[]).unwrap();
    let mut pushed = Vec::new();
    for i in 0..20 {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": kist_tests::oci::MANIFEST,
            "artifactType": "application/vnd.example.note",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [],
            "subject": {"mediaType": kist_tests::oci::MANIFEST,
                        "digest": subject.digest, "size": subject.manifest.len()},
            "annotations": {"note": format!("{i}").repeat(1 << 20)},
        })
        .to_string();
        let pushed_as = store
            .registry()
            .put_manifest(
                "app",
                &sha256(manifest.as_bytes()),
                kist_tests::oci::MANIFEST,
                manifest.as_bytes(),
            )
            .unwrap();
        pushed.push(pushed_as.digest);
    }
    let server = kist_tests::Server::start(h.path());
    let mut next = Some(format!("/v2/app/referrers/{}", subject.digest));
    let mut seen = Vec::new();
    while let Some(path) = next {
        let r = fetch(ureq::get(&server.url(path.trim_start_matches('/'))));
        assert_eq!(r.status(), 200);
        next = next_page(&r);
        let page = body(r);
        assert!(page.len() <= 4 << 20, "a page of {} bytes", page.len());
        let index: serde_json::Value = serde_json::from_slice(&page).unwrap();
        for m in index["manifests"].as_array().unwrap() {
            seen.push(m["digest"].as_str().unwrap().to_owned());
        }
    }
    pushed.sort();
    assert_eq!(seen, pushed, "every referrer once, in digest order");
}
