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
    let out = std::process::Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(h.path())
        .args(["info", &child])
        .env_remove("KIST_STORE")
        .output()
        .unwrap();
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
    let mut settings = store.retention().settings().unwrap();
    settings.upload_grace_seconds = 0;
    settings.untagged_grace_seconds = 0;
    store.retention().set_settings(settings).unwrap();
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
/// `Read` calls (issue 27, item 12: a purged blob stayed readable).
#[test]
fn kept_readers_stop_serving_what_is_purged_or_released() {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{DeleteContentRequest, ReadContentRequest};
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
        for digest in [&purged, &released] {
            assert_eq!(read(&mut content, digest, 0).await.unwrap().len(), 32 << 10);
        }
        // The library may not run inside this runtime: purge beside it.
        std::thread::scope(|s| s.spawn(|| store.purge(&purged).unwrap()).join().unwrap());
        let delete = DeleteContentRequest {
            digest: released.clone(),
        };
        content.delete(delete).await.unwrap();
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
