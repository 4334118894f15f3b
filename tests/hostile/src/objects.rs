//! `objects` seen from a component: keys that try to leave the store's
//! prefix, descriptors and sizes the host must refuse, and the contract a
//! store kept in object storage relies on (conditional puts, listing
//! pages, bulk bytes moved and hashed by the host).

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::objects::{self, ObjectError, PutMode};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use crate::root;

/// Every way out of the prefix a key or a listing could try, each of
/// which must fail with `invalid-key`; then descriptors and sizes the
/// host must refuse. The report has `ESCAPED` for anything that got
/// through and `WRONG` for a refusal of the wrong kind.
pub fn escapes() -> String {
    let long = "a".repeat(1025);
    let keys = [
        "../outside",
        "/outside",
        "a/../../outside",
        "..",
        "a/./b",
        "a//b",
        "a/",
        "%2e%2e/outside",
        "a\\..\\b",
        "",
        &long,
        "a\0b",
        "a b",
        "\u{fc}",
    ];
    let hasher = Hasher::new(Algorithm::Sha256);
    let empty = hasher.sum();
    let mut report = Vec::new();
    for key in keys {
        let shown: String = key.chars().take(20).collect();
        let tries = [
            (
                "put",
                objects::put(key, b"x", &PutMode::Overwrite).map(drop),
            ),
            ("head", objects::head(key).map(drop)),
            ("get", objects::get_record(key).map(drop)),
            ("delete", objects::delete(key)),
            ("list", objects::list_objects(key, None, 10).map(drop)),
            (
                "list after",
                objects::list_objects("a", Some(key), 10).map(drop),
            ),
            (
                "download",
                objects::download(key, 0, 1, &scratch("objects-target"), 0, &hasher).map(drop),
            ),
        ];
        for (what, tried) in tries {
            // The empty prefix is the whole store, which a listing may ask.
            if what == "list" && key.is_empty() {
                continue;
            }
            report.push(expect(&format!("{what} {shown:?}"), tried, |e| {
                matches!(e, ObjectError::InvalidKey(_))
            }));
        }
    }
    let layout = open("oci-layout", DescriptorFlags::READ);
    let upload = |source: &Descriptor, offset, length, mode| {
        objects::upload("ok", source, offset, length, &hasher, &mode).map(drop)
    };
    let bad_descriptor = |e: &ObjectError| matches!(e, ObjectError::BadDescriptor(_));
    let io = |e: &ObjectError| matches!(e, ObjectError::Io(_));
    let too_large = |e: &ObjectError| matches!(e, ObjectError::TooLarge(_));
    let record = objects::max_record();
    report.extend([
        expect(
            "upload from the store directory",
            upload(&root(), 0, 10, PutMode::Overwrite),
            bad_descriptor,
        ),
        expect(
            "download into a read-only file",
            objects::download("ok", 0, 1, &layout, 0, &hasher).map(drop),
            bad_descriptor,
        ),
        expect(
            "upload offset wraps",
            upload(&layout, u64::MAX, 2, PutMode::Overwrite),
            io,
        ),
        expect(
            "upload past the source's end",
            upload(&layout, 0, 1 << 20, PutMode::Overwrite),
            io,
        ),
        expect(
            "if-match upload above a record",
            upload(&layout, 0, record + 1, PutMode::IfMatch("x".into())),
            too_large,
        ),
        expect(
            "put above a record",
            objects::put("big", &vec![0; record as usize + 1], &PutMode::Overwrite).map(drop),
            too_large,
        ),
    ]);
    if hasher.sum() != empty {
        report.push("ESCAPED: a refused transfer changed the hash".into());
    }
    report.join("; ")
}

/// The contract, step by step: `contract held: …`, or `BROKEN: ` and the
/// first step that did not hold.
pub fn contract() -> String {
    match check_contract() {
        Ok(summary) => format!("contract held: {summary}"),
        Err(step) => format!("BROKEN: {step}"),
    }
}

/// One racer's `if-absent` put of `race/one`: `won` or `lost`.
pub fn race() -> String {
    match objects::put("race/one", b"racer", &PutMode::IfAbsent) {
        Ok(_) => "won".into(),
        Err(ObjectError::ConditionFailed) => "lost".into(),
        Err(e) => format!("failed: {e:?}"),
    }
}

fn check_contract() -> Result<String, String> {
    let holds = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_owned()) };
    let refused = |what: &str, got: Result<String, ObjectError>| match got {
        Err(ObjectError::ConditionFailed) => Ok(()),
        other => Err(format!("{what}: {other:?}, not condition-failed")),
    };

    // Records: create once, compare-and-swap by ETag.
    let first = objects::put("records/a", b"one", &PutMode::IfAbsent).map_err(fail("create"))?;
    refused(
        "second create",
        objects::put("records/a", b"two", &PutMode::IfAbsent),
    )?;
    let (data, etag) = objects::get_record("records/a").map_err(fail("get"))?;
    holds(
        "get returns the created record",
        data == b"one" && etag == first,
    )?;
    let second = objects::put("records/a", b"two", &PutMode::IfMatch(first.clone()))
        .map_err(fail("swap"))?;
    holds("a swap changes the ETag", second != first)?;
    refused(
        "swap with a stale ETag",
        objects::put("records/a", b"three", &PutMode::IfMatch(first)),
    )?;
    refused(
        "swap of a missing key",
        objects::put("records/none", b"x", &PutMode::IfMatch(second.clone())),
    )?;
    let meta = objects::head("records/a").map_err(fail("head"))?;
    holds(
        "head tells size and ETag",
        meta.size == 3 && meta.etag == second && meta.key == "records/a",
    )?;
    holds(
        "a missing key is not-found",
        matches!(objects::head("records/none"), Err(ObjectError::NotFound))
            && matches!(
                objects::get_record("records/none"),
                Err(ObjectError::NotFound)
            )
            && matches!(
                objects::download(
                    "records/none",
                    0,
                    1,
                    &scratch("objects-target"),
                    0,
                    &Hasher::new(Algorithm::Sha256)
                ),
                Err(ObjectError::NotFound)
            ),
    )?;

    // Listing: whole segments, key order, pages.
    for i in 0..5 {
        objects::put(&format!("list/k{i}"), b"", &PutMode::Overwrite).map_err(fail("put"))?;
    }
    objects::put("listing/not-in-list", b"", &PutMode::Overwrite).map_err(fail("put"))?;
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = objects::list_objects("list", after.as_deref(), 2).map_err(fail("list"))?;
        pages.push(
            page.objects
                .iter()
                .map(|o| o.key.clone())
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    holds(
        &format!("list pages {pages:?}"),
        pages
            == [
                vec!["list/k0", "list/k1"],
                vec!["list/k2", "list/k3"],
                vec!["list/k4"],
            ],
    )?;

    // Bulk: a file the component wrote goes up in parts and comes back,
    // hashed by the host both ways.
    let length = (40 << 20) + 5;
    let (source, expected) = pattern_file("objects-source", length)?;
    let up = Hasher::new(Algorithm::Sha256);
    objects::upload("blobs/big", &source, 0, length, &up, &PutMode::IfAbsent)
        .map_err(fail("upload"))?;
    holds("upload hashes what it sends", up.sum() == expected)?;
    holds(
        "the uploaded size",
        objects::head("blobs/big").map_err(fail("head"))?.size == length,
    )?;
    let again = Hasher::new(Algorithm::Sha256);
    refused(
        "a second if-absent upload",
        objects::upload("blobs/big", &source, 0, length, &again, &PutMode::IfAbsent),
    )?;
    let target = scratch("objects-target");
    let down = Hasher::new(Algorithm::Sha256);
    let got = objects::download("blobs/big", 0, u64::MAX / 2, &target, 0, &down)
        .map_err(fail("download"))?;
    holds(
        "download hashes what it writes",
        got == length && down.sum() == expected,
    )?;
    let part = Hasher::new(Algorithm::Sha256);
    let got = objects::download("blobs/big", 1000, 10, &target, 0, &part)
        .map_err(fail("ranged download"))?;
    let (bytes, _) = target.read(10, 0).map_err(|e| format!("read: {e:?}"))?;
    holds(
        "a ranged download",
        got == 10 && bytes == (1000..1010).map(pattern).collect::<Vec<_>>(),
    )?;
    let past = Hasher::new(Algorithm::Sha256);
    holds(
        "a download past the end",
        matches!(
            objects::download("blobs/big", length + 10, 10, &target, 0, &past),
            Ok(0)
        ),
    )?;

    // A file below the multipart threshold goes up in one PUT, and comes
    // back the same.
    let small = (1 << 20) + 3;
    let (source, expected) = pattern_file("objects-small", small)?;
    let up = Hasher::new(Algorithm::Sha256);
    objects::upload("blobs/small", &source, 0, small, &up, &PutMode::IfAbsent)
        .map_err(fail("single-put upload"))?;
    let down = Hasher::new(Algorithm::Sha256);
    let got = objects::download("blobs/small", 0, small, &target, 0, &down)
        .map_err(fail("single-put download"))?;
    holds(
        "a single-put upload comes back the same",
        up.sum() == expected && got == small && down.sum() == expected,
    )?;
    objects::delete("blobs/small").map_err(fail("delete small"))?;

    // Deleting is idempotent.
    objects::delete("blobs/big").map_err(fail("delete"))?;
    objects::delete("blobs/big").map_err(fail("second delete"))?;
    holds(
        "a deleted key is gone",
        matches!(objects::head("blobs/big"), Err(ObjectError::NotFound)),
    )?;
    Ok(format!(
        "{} list pages, {length} bytes up and down",
        pages.len()
    ))
}

/// What a failed step of the contract reports.
fn fail(what: &'static str) -> impl Fn(ObjectError) -> String {
    move |e| format!("{what}: {e:?}")
}

/// Byte `i` of the pattern files.
fn pattern(i: u64) -> u8 {
    (i * 7 % 251) as u8
}

/// A file of `length` pattern bytes, and their sha256.
fn pattern_file(path: &str, length: u64) -> Result<(Descriptor, Vec<u8>), String> {
    let file = scratch(path);
    let hasher = Hasher::new(Algorithm::Sha256);
    let mut at = 0;
    while at < length {
        let chunk: Vec<u8> = (at..length.min(at + (1 << 20))).map(pattern).collect();
        file.write(&chunk, at)
            .map_err(|e| format!("write: {e:?}"))?;
        hasher.update(&chunk);
        at += chunk.len() as u64;
    }
    Ok((file, hasher.sum()))
}

/// `path` in the store, opened to read and write (created if missing).
fn scratch(path: &str) -> Descriptor {
    root()
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::CREATE,
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        )
        .expect("a scratch file in the store")
}

fn open(path: &str, flags: DescriptorFlags) -> Descriptor {
    root()
        .open_at(PathFlags::empty(), path, OpenFlags::empty(), flags)
        .expect("a file in the store")
}

/// `refused: what` if `tried` failed as `right` says; `ESCAPED` if it
/// succeeded, `WRONG` if it failed otherwise.
fn expect(
    what: &str,
    tried: Result<(), ObjectError>,
    right: impl Fn(&ObjectError) -> bool,
) -> String {
    match tried {
        Ok(()) => format!("ESCAPED: {what}"),
        Err(e) if right(&e) => format!("refused: {what}"),
        Err(e) => format!("WRONG: {what}: {e:?}"),
    }
}
