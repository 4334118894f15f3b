//! The store's retention settings and quotas: `retention.json`, read once
//! per change. Its modification time is looked at most once a second per
//! instance (writes consult the settings for quotas, and a `stat` per put
//! would cost more than the bookkeeping is allowed to), so a change made
//! by another process applies within a second.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::retention::{Limit, Quota, Settings};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::shared::cached::Cached;
use crate::shared::error::{self, Result, corrupt, invalid};
use crate::shared::fs::{self, Durability};

/// Where the settings live.
const FILE: &str = "retention.json";
/// A day: containerd's ingest expiry.
const DEFAULT_INGEST_TTL: u64 = 86_400;
/// An hour: zot's `gcDelay`, for both registry graces.
const DEFAULT_REGISTRY_GRACE: u64 = 3_600;

/// What `retention.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub cache_ttl: u64,
    pub ingest_ttl: u64,
    /// How long a blob pushed to a registry repository is a root by
    /// itself (its manifest may be still to come).
    #[serde(default = "registry_grace")]
    pub upload_grace: u64,
    /// How long a registry manifest without a tag is a root by itself.
    #[serde(default = "registry_grace")]
    pub untagged_grace: u64,
    #[serde(default)]
    pub quotas: Vec<QuotaRecord>,
}

fn registry_grace() -> u64 {
    DEFAULT_REGISTRY_GRACE
}

/// One quota as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct QuotaRecord {
    /// `None`: the whole store.
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cache_ttl: 0,
            ingest_ttl: DEFAULT_INGEST_TTL,
            upload_grace: DEFAULT_REGISTRY_GRACE,
            untagged_grace: DEFAULT_REGISTRY_GRACE,
            quotas: Vec::new(),
        }
    }
}

impl QuotaRecord {
    /// The quota as the WIT has it.
    pub fn to_wit(&self) -> Quota {
        Quota {
            holder_prefix: self.prefix.clone(),
            limit: match (self.bytes, self.percent) {
                (_, Some(p)) => Limit::Percent(p),
                (b, None) => Limit::Bytes(b.unwrap_or(0)),
            },
        }
    }

    /// From the WIT, checked.
    pub fn from_wit(q: Quota) -> Result<Self> {
        if let Some(p) = &q.holder_prefix {
            crate::retention::holds::check(p)?;
        }
        let (bytes, percent) = match q.limit {
            Limit::Bytes(b) => (Some(b), None),
            Limit::Percent(p) if (1..=100).contains(&p) => (None, Some(p)),
            Limit::Percent(p) => return Err(invalid(format!("quota of {p}%: 1 to 100"))),
        };
        Ok(Self {
            prefix: q.holder_prefix,
            bytes,
            percent,
        })
    }

    /// Whether the quota counts what `holder` holds.
    pub fn counts(&self, holder: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| holder.starts_with(p))
    }

    /// Its limit in bytes, given the filesystem's size.
    pub fn limit(&self, filesystem: Option<(u64, u64)>) -> Option<u64> {
        match (self.bytes, self.percent) {
            (_, Some(p)) => filesystem.map(|(total, _)| total / 100 * u64::from(p)),
            (b, None) => b,
        }
    }

    /// How people read it: `the store's quota` or `the quota of holders
    /// layers*`, with its limit.
    pub fn describe(&self, filesystem: Option<(u64, u64)>) -> String {
        let whose = match &self.prefix {
            None => "the store's quota".to_owned(),
            Some(p) => format!("the quota of holders {p}*"),
        };
        match (self.percent, self.limit(filesystem)) {
            (Some(p), Some(l)) => format!("{whose} ({p}% of the filesystem: {l} bytes)"),
            (Some(p), None) => format!("{whose} ({p}% of the filesystem)"),
            (None, l) => format!("{whose} ({} bytes)", l.unwrap_or(0)),
        }
    }
}

impl Config {
    pub fn settings(&self) -> Settings {
        Settings {
            cache_ttl_seconds: self.cache_ttl,
            ingest_ttl_seconds: self.ingest_ttl,
            upload_grace_seconds: self.upload_grace,
            untagged_grace_seconds: self.untagged_grace,
        }
    }
}

thread_local! {
    /// The settings last read.
    static CACHED: Cached<Config> = const { Cached::new() };
    /// The settings last returned, and when the file was last looked at
    /// (the monotonic clock: the wall clock may be a test's, standing
    /// still).
    static LOOKED: RefCell<Option<(Instant, Config)>> = const { RefCell::new(None) };
}

/// How long the settings read are used before the file is looked at
/// again.
const RECHECK: Duration = Duration::from_secs(1);

/// The settings in force: re-read when the file changed, looked at no
/// more than once a second.
pub fn current() -> Result<Config> {
    let now = Instant::now();
    let recent = LOOKED.with_borrow(|l| {
        l.as_ref()
            .filter(|(at, _)| now.duration_since(*at) < RECHECK)
            .map(|(_, config)| config.clone())
    });
    if let Some(config) = recent {
        return Ok(config);
    }
    let config = CACHED
        .with(|c| {
            c.get(FILE, |bytes| {
                serde_json::from_slice(bytes).map_err(|e| corrupt(FILE, e))
            })
        })?
        .map_or_else(Config::default, |c| (*c).clone());
    LOOKED.with_borrow_mut(|l| *l = Some((now, config.clone())));
    Ok(config)
}

/// Makes the next [`current`] look at the file.
fn forget() {
    LOOKED.with_borrow_mut(|l| *l = None);
}

/// Serialises changes to the settings.
pub fn lock() -> Result<Guard> {
    locks::lock("retention-settings", 10_000).map_err(|e| error::lock("retention-settings", e))
}

/// Replaces the settings; the caller holds [`lock`]. This instance sees
/// them at once.
pub fn save(config: &Config, _locked: &Guard) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(config).expect("settings serialise");
    fs::write_atomic(".", FILE, &bytes, Durability::Synced)?;
    forget();
    Ok(())
}
