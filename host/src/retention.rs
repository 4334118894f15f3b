//! [`Retention`]: what the store keeps and for how long — cache and
//! ingest TTLs, quotas, space usage, and collections.

use wasmtime::component::ResourceAny;

use crate::bindings::exports::kist::content::retention::{
    Limit, Quota, Removed, Settings, SpaceUsage,
};
use crate::error::Result;
use crate::held::Held;
use crate::store::{Scoped, Store};

/// A store's retention settings, quotas and collector, from
/// [`Store::retention`]. See the `retention` interface in `wit/` for the
/// model: holders, references, the cache, quotas.
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// let store = kist::Store::open("/tmp/kist-demo")?;
/// let retention = store.retention();
/// retention.set_quota(Some("layers"), kist::Limit::Percent(40))?;
/// let freed: u64 = retention
///     .collect(false)?
///     .map(|r| r.map(|r| r.bytes))
///     .sum::<Result<u64, _>>()?;
/// println!("freed {freed} bytes");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Retention {
    shared: Scoped,
}

impl Store {
    /// The store's retention settings, quotas and collector.
    pub fn retention(&self) -> Retention {
        Retention {
            shared: self.shared.clone(),
        }
    }
}

impl Retention {
    /// The cache and ingest TTLs.
    pub fn settings(&self) -> Result<Settings> {
        self.shared
            .call(|api, s| api.kist_content_retention().call_get_settings(s))
    }

    /// Replaces the cache and ingest TTLs (stored in the store: every
    /// process on it agrees).
    pub fn set_settings(&self, settings: Settings) -> Result<()> {
        self.shared
            .call(|api, s| api.kist_content_retention().call_set_settings(s, settings))
    }

    /// Sets the quota of the whole store (`holder_prefix` `None`) or of the
    /// holders whose names start with `holder_prefix`.
    pub fn set_quota(&self, holder_prefix: Option<&str>, limit: Limit) -> Result<()> {
        let quota = Quota {
            holder_prefix: holder_prefix.map(str::to_owned),
            limit,
        };
        self.shared
            .call(|api, s| api.kist_content_retention().call_set_quota(s, &quota))
    }

    /// Removes a quota.
    pub fn remove_quota(&self, holder_prefix: Option<&str>) -> Result<()> {
        self.shared.call(|api, s| {
            api.kist_content_retention()
                .call_remove_quota(s, holder_prefix)
        })
    }

    /// The quotas.
    pub fn quotas(&self) -> Result<Vec<Quota>> {
        self.shared
            .call(|api, s| api.kist_content_retention().call_quotas(s))
    }

    /// How the store's space is used: held, cached, in ingests, per holder
    /// and per quota.
    pub fn usage(&self) -> Result<SpaceUsage> {
        self.shared
            .call(|api, s| api.kist_content_retention().call_usage(s))
    }

    /// Starts a collection (see [`Collection`]); with `dry_run` nothing is
    /// removed and it reports what would be.
    pub fn collect(&self, dry_run: bool) -> Result<Collection> {
        let held = Held::create(&self.shared, |api, s| {
            api.kist_content_retention()
                .collection()
                .call_constructor(s, dry_run)
                .map(Ok)
        })?;
        Ok(Collection {
            held,
            batch: Vec::new(),
        })
    }
}

/// A collection in progress: an iterator over what it removes, one step
/// (a bounded amount of work) per call into the component, so it runs
/// beside writers without holding them up.
pub struct Collection {
    held: Held,
    batch: Vec<Removed>,
}

impl Iterator for Collection {
    type Item = Result<Removed>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.batch.is_empty() {
            let step = self.held.call(
                |_| false,
                |api, s, collection: ResourceAny| {
                    api.kist_content_retention()
                        .collection()
                        .call_next(s, collection)
                },
            )?;
            match step {
                Ok(Some(removed)) => {
                    self.batch = removed;
                    self.batch.reverse();
                }
                Ok(None) => {
                    self.held.finish();
                    return None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.batch.pop().map(Ok)
    }
}
