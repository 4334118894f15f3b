//! Artifact records on disk, and the names they live under.
//!
//! ```text
//! artifacts/<kind>/<namespace>/<name>/object        owner: uid, current file
//! artifacts/<kind>/<namespace>/<name>/files/<file>  one artifact: revision, digest, ...
//! artifacts/.tmp/                                   archives being built
//! ```
//! Records are small JSON files replaced atomically under the object's
//! artifact lock; the bytes are blobs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::storer::{Artifact, Object};
use crate::bindings::kist::content::locks::{self, Guard, LockError};
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::content::labels;
use crate::retention::holds;
use crate::shared::error::{self, Result, corrupt, invalid, precondition};
use crate::shared::fs::{self, FileType};

/// Root of the artifact records.
pub const ROOT: &str = "artifacts";
/// Where archives and copied files are written before they become blobs.
pub const TMP: &str = "artifacts/.tmp";
/// Name of the current-artifact alias, before the file's extension.
const LATEST: &str = "latest";
/// The lock a build holds on its temporary file `name` in [`TMP`].
pub fn temp_lock(name: &str) -> String {
    format!("artifact-tmp/{name}")
}

/// Longest pause between two tries of a held artifact lock.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// The holder by which the artifact `file` of the object at `place` holds
/// its blob: `artifact/<kind>/<namespace>/<name>/<file>`.
pub fn holder(place: &Place, file: &str) -> String {
    format!("{}{}/{file}", holds::ARTIFACT, place.key)
}

/// Whether the artifact a holder `artifact/<path>` names is recorded and
/// points at `digest`: an artifact holds its blob only while its record
/// does (a crash between taking the hold and writing the record leaves a
/// hold that holds nothing).
pub fn holds_blob(path: &str, digest: &str) -> Result<bool> {
    let Some((key, file)) = path.rsplit_once('/') else {
        return Ok(false);
    };
    let place = Place {
        key: key.to_owned(),
    };
    Ok(filename(file).is_ok() && place.file(file)?.is_some_and(|r| r.digest == digest))
}

/// What `object` holds.
#[derive(Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The object as given (kind in its original case).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The current artifact's file name.
    pub current: Option<String>,
}

/// What `files/<file>` holds.
#[derive(Serialize, Deserialize, Clone)]
pub struct FileRecord {
    pub revision: String,
    pub digest: String,
    pub size: u64,
    /// (seconds, nanoseconds) since the epoch.
    pub updated: (u64, u32),
    /// Recording order within the object: breaks ties between equal times.
    pub seq: u64,
    pub metadata: BTreeMap<String, String>,
}

/// An object's place in the store.
pub struct Place {
    /// `<kind>/<namespace>/<name>`, kind lower-cased.
    pub key: String,
}

/// A name segment, as Kubernetes names objects: 1..=253 of `[a-z0-9.-]`
/// (upper case too if `upper_ok`) starting and ending with a letter or
/// digit. So never `.`, `..` or hidden: listings skip dot-directories,
/// and `.tmp` is where archives are built.
fn segment(what: &str, s: &str, upper_ok: bool) -> Result<()> {
    let alnum = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (upper_ok && c.is_ascii_uppercase())
    };
    let ok_char = |c: char| alnum(c) || c == '.' || c == '-';
    let ends_ok = s.starts_with(alnum) && s.ends_with(alnum);
    if s.len() > 253 || !ends_ok || !s.chars().all(ok_char) {
        return Err(invalid(format!(
            "{what} {s:?}: must be 1 to 253 characters of [a-z0-9.-] that start and end \
             with a letter or digit"
        )));
    }
    Ok(())
}

/// A file name: 1..=255 of `[A-Za-z0-9._-]`, not hidden, not the alias.
pub fn filename(f: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if f.is_empty() || f.len() > 255 || !f.chars().all(ok) || f.starts_with('.') {
        return Err(invalid(format!(
            "file name {f:?}: must be 1 to 255 characters of [A-Za-z0-9._-], not starting with ."
        )));
    }
    if f.starts_with(LATEST) {
        return Err(invalid(format!(
            "file name {f:?}: names starting with `latest` are the current-artifact alias"
        )));
    }
    Ok(())
}

impl Place {
    /// Validates `object` and names its place.
    pub fn of(object: &Object) -> Result<Self> {
        segment("kind", &object.kind, true)?;
        segment("namespace", &object.namespace, false)?;
        segment("name", &object.name, false)?;
        let uid = &object.uid;
        if uid.is_empty() || uid.len() > 128 || !uid.chars().all(|c| matches!(c, '!'..='~')) {
            return Err(invalid(format!(
                "uid {uid:?}: must be 1 to 128 printable ASCII characters"
            )));
        }
        Ok(Self {
            key: format!(
                "{}/{}/{}",
                object.kind.to_ascii_lowercase(),
                object.namespace,
                object.name
            ),
        })
    }

    /// The object's directory.
    pub fn dir(&self) -> String {
        format!("{ROOT}/{}", self.key)
    }

    fn files_dir(&self) -> String {
        format!("{}/files", self.dir())
    }

    /// Takes the object's artifact lock, waiting up to `wait_ms`.
    ///
    /// A `try-lock` name polled here rather than the capability's `lock`:
    /// the lock is held for a whole reconcile (seconds, an archive's
    /// writing), which `lock`'s short critical sections are not meant for.
    pub fn lock(&self, wait_ms: u32) -> Result<Guard> {
        let name = format!("artifact/{}", self.key);
        let deadline = Instant::now() + Duration::from_millis(wait_ms.into());
        let mut backoff = Duration::from_millis(1);
        loop {
            match locks::try_lock(&name) {
                Err(LockError::Busy) if Instant::now() < deadline => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other.map_err(|e| error::lock(&name, e)),
            }
        }
    }

    /// The object's record, if it has one.
    pub fn load(&self) -> Result<Option<ObjectRecord>> {
        load_json(&format!("{}/object", self.dir()))
    }

    /// The object's record, checked to belong to `object` (same uid).
    pub fn load_owned(&self, object: &Object) -> Result<Option<ObjectRecord>> {
        let record = self.load()?;
        if let Some(r) = record.as_ref().filter(|r| r.uid != object.uid) {
            return Err(precondition(format!(
                "{} belongs to the object with uid {:?}; remove it first",
                self.key, r.uid
            )));
        }
        Ok(record)
    }

    /// Replaces the object's record; the caller holds the lock.
    pub fn save(&self, record: &ObjectRecord) -> Result<()> {
        for dir in [ROOT.to_owned(), self.dir(), self.files_dir()] {
            mkdirs(&dir)?;
        }
        let bytes = serde_json::to_vec(record).expect("records serialise");
        fs::write_atomic(&self.dir(), "object", &bytes, fs::Durability::Synced)
    }

    /// The artifact `file`, if recorded.
    pub fn file(&self, file: &str) -> Result<Option<FileRecord>> {
        load_json(&format!("{}/{file}", self.files_dir()))
    }

    /// Every recorded artifact of the object, by file name.
    pub fn files(&self) -> Result<BTreeMap<String, FileRecord>> {
        let mut out = BTreeMap::new();
        for (name, kind) in fs::list_dir(&self.files_dir())?.unwrap_or_default() {
            if kind != FileType::RegularFile || filename(&name).is_err() {
                continue; // a record's temporary file
            }
            if let Some(record) = self.file(&name)? {
                out.insert(name, record);
            }
        }
        Ok(out)
    }

    /// Records the artifact `file`; the caller holds the lock.
    pub fn save_file(&self, file: &str, record: &FileRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).expect("records serialise");
        fs::write_atomic(&self.files_dir(), file, &bytes, fs::Durability::Synced)
    }

    /// Forgets the artifact `file`; the caller holds the lock.
    pub fn remove_file(&self, file: &str) -> Result<()> {
        fs::remove_file(&format!("{}/{file}", self.files_dir())).map(drop)
    }

    /// Removes the object's directory; the caller holds the lock.
    pub fn remove(&self) -> Result<()> {
        fs::remove_tree(&self.dir()).map(drop)
    }
}

/// Creates `path` and its parents below the root.
pub fn mkdirs(path: &str) -> Result<()> {
    let mut at = String::new();
    for part in path.split('/') {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        fs::mkdir(&at)?;
    }
    Ok(())
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &str) -> Result<Option<T>> {
    let Some(bytes) = fs::read_file(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(path, e))
}

/// The alias of the current artifact `file`: `latest` plus its extension,
/// the last one (`6.5.0.tgz` → `latest.tgz`) or both of a compressed
/// tarball (`abc.tar.gz` → `latest.tar.gz`).
pub fn alias_of(file: &str) -> String {
    let (stem, ext) = match file.rsplit_once('.') {
        Some((stem, ext)) => (stem, format!(".{ext}")),
        None => return LATEST.to_owned(),
    };
    match stem.strip_suffix(".tar").filter(|s| !s.is_empty()) {
        Some(_) => format!("{LATEST}.tar{ext}"),
        None => format!("{LATEST}{ext}"),
    }
}

/// The current time as a record timestamp.
pub fn now() -> (u64, u32) {
    let t = fs::now();
    (t.seconds, t.nanoseconds)
}

/// The WIT artifact for `file` of the object `record`.
pub fn to_artifact(place: &Place, owner: &ObjectRecord, file: &str, r: FileRecord) -> Artifact {
    Artifact {
        object: Object {
            kind: owner.kind.clone(),
            namespace: owner.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        },
        path: format!("{}/{file}", place.key),
        revision: r.revision,
        digest: r.digest,
        size: r.size,
        last_update: Datetime {
            seconds: r.updated.0,
            nanoseconds: r.updated.1,
        },
        metadata: labels::to_list(r.metadata),
    }
}

/// An artifact path split into its object's key and file name, the
/// alias resolved to the current file. `None`: no such object or alias
/// target.
pub fn resolve(path: &str) -> Result<Option<(Place, ObjectRecord, String)>> {
    let parts: Vec<&str> = path.split('/').collect();
    let [kind, namespace, name, file] = parts[..] else {
        return Err(invalid(format!(
            "artifact path {path:?}: expected <kind>/<namespace>/<name>/<file>"
        )));
    };
    for (what, s) in [("kind", kind), ("namespace", namespace), ("name", name)] {
        segment(what, s, false)?;
    }
    let place = Place {
        key: format!("{kind}/{namespace}/{name}"),
    };
    let Some(owner) = place.load()? else {
        return Ok(None);
    };
    if !file.starts_with(LATEST) {
        filename(file)?;
        return Ok(Some((place, owner, file.to_owned())));
    }
    let current = owner.current.clone().filter(|c| alias_of(c) == file);
    Ok(current.map(|c| (place, owner, c)))
}

/// Every object with a record: (place, record), sorted by key.
pub fn objects() -> Result<Vec<(Place, ObjectRecord)>> {
    let mut out = Vec::new();
    for kind in subdirs(ROOT)? {
        for namespace in subdirs(&format!("{ROOT}/{kind}"))? {
            for name in subdirs(&format!("{ROOT}/{kind}/{namespace}"))? {
                let place = Place {
                    key: format!("{kind}/{namespace}/{name}"),
                };
                if let Some(record) = place.load()? {
                    out.push((place, record));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    Ok(out)
}

/// Names of the directories in `path`, skipping hidden ones.
fn subdirs(path: &str) -> Result<Vec<String>> {
    Ok(fs::list_dir(path)?
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, k)| *k == FileType::Directory && !n.starts_with('.'))
        .map(|(n, _)| n)
        .collect())
}
