//! The `retention` interface: settings, quotas, space usage and the
//! collection resource.

use std::collections::BTreeMap;

use crate::Component;
use crate::bindings::exports::kist::content::retention::{
    Guest, HolderUsage, Quota, QuotaUsage, Settings, SpaceUsage,
};
use crate::bindings::kist::content::space;
use crate::retention::collector::Collection;
use crate::retention::quota;
use crate::retention::scan::Scan;
use crate::retention::settings::{self, QuotaRecord};
use crate::shared::error::{Error, Result, invalid};
use crate::shared::layout;
use crate::shared::scope::Caller;

impl Guest for Component {
    type Collection = Collection;

    fn get_settings() -> Result<Settings> {
        Caller::current().administer("retention settings, quotas and usage")?;
        layout::ensure()?;
        Ok(settings::current()?.settings())
    }

    fn set_settings(s: Settings) -> Result<()> {
        Caller::current().administer("retention settings, quotas and usage")?;
        layout::ensure()?;
        let lock = settings::lock()?;
        let mut config = settings::current()?;
        config.cache_ttl = s.cache_ttl_seconds;
        config.ingest_ttl = s.ingest_ttl_seconds;
        config.upload_grace = s.upload_grace_seconds;
        config.untagged_grace = s.untagged_grace_seconds;
        settings::save(&config, &lock)
    }

    fn set_quota(q: Quota) -> Result<()> {
        Caller::current().administer("retention settings, quotas and usage")?;
        let record = QuotaRecord::from_wit(q)?;
        if record.percent.is_some() && space::filesystem().is_none() {
            return Err(invalid(
                "a quota in percent needs the size of the filesystem, which this host does not tell",
            ));
        }
        layout::ensure()?;
        let lock = settings::lock()?;
        let mut config = settings::current()?;
        config.quotas.retain(|r| r.prefix != record.prefix);
        config.quotas.push(record);
        config.quotas.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        settings::save(&config, &lock)?;
        quota::reset()
    }

    fn remove_quota(prefix: Option<String>) -> Result<()> {
        Caller::current().administer("retention settings, quotas and usage")?;
        layout::ensure()?;
        let lock = settings::lock()?;
        let mut config = settings::current()?;
        let before = config.quotas.len();
        config.quotas.retain(|r| r.prefix != prefix);
        if config.quotas.len() == before {
            return Err(Error::NotFound);
        }
        settings::save(&config, &lock)?;
        quota::reset()
    }

    fn quotas() -> Result<Vec<Quota>> {
        Caller::current().administer("retention settings, quotas and usage")?;
        layout::ensure()?;
        Ok(settings::current()?
            .quotas
            .iter()
            .map(QuotaRecord::to_wit)
            .collect())
    }

    fn usage() -> Result<SpaceUsage> {
        Caller::current().administer("retention settings, quotas and usage")?;
        layout::ensure()?;
        let config = settings::current()?;
        let mut scan = Scan::new(config.clone())?;
        scan.finish()?;
        let filesystem = space::filesystem();
        let mut usage = SpaceUsage {
            held: 0,
            held_blobs: 0,
            cached: 0,
            cached_blobs: 0,
            ingests: scan.ingests.iter().map(|i| i.size).sum(),
            ingest_count: scan.ingests.len() as u64,
            holders: Vec::new(),
            quotas: Vec::new(),
            filesystem,
        };
        let mut holders: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for blob in scan.blobs.values() {
            if blob.live.is_empty() {
                usage.cached += blob.size;
                usage.cached_blobs += 1;
            } else {
                usage.held += blob.size;
                usage.held_blobs += 1;
            }
            for h in &blob.live {
                let entry = holders.entry(h).or_default();
                entry.0 += 1;
                entry.1 += blob.size;
            }
        }
        usage.holders = holders
            .into_iter()
            .map(|(holder, (blobs, bytes))| HolderUsage {
                holder: holder.to_owned(),
                blobs,
                bytes,
            })
            .collect();
        usage.quotas = config
            .quotas
            .iter()
            .map(|q| QuotaUsage {
                quota: q.to_wit(),
                used: scan.used(q.prefix.as_deref()),
                limit_bytes: q.limit(filesystem),
            })
            .collect();
        Ok(usage)
    }
}
