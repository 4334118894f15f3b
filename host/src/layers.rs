//! [`Layers`]: desired-state layers (AosEdge's layer manager). Tell the
//! store which layers should be installed; it downloads, verifies and
//! unpacks what is missing, caches what is no longer wanted, restores
//! cached layers without downloading, and removes them after their TTL or
//! when space runs short.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;

use crate::bindings::exports::kist::content::layers::{
    LayerDesc, LayerInfo, LayerResult, LentDir, Options, Progress,
};
use crate::error::{Error, Result};
use crate::held::Held;
use crate::store::{Scoped, Store};
use crate::storer::Lent;

/// The longest one call waits for another run's lock.
const WAIT_SLICE: Duration = Duration::from_secs(10);

/// The desired-state layers of a store, from [`Store::layers`].
///
/// Downloads go through the store's [`FetchPolicy`](crate::FetchPolicy):
/// only allowed origins are reached; `file://` URLs only under the
/// directories a call lends.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = kist::FetchPolicy::default().allow("http://127.0.0.1:8080")?;
/// let store = kist::Store::builder("/var/lib/kist").fetch_policy(policy).open()?;
/// let desired = vec![kist::LayerDesc {
///     digest: "sha256:…".into(),
///     size: 52_428_800,
///     urls: vec!["http://127.0.0.1:8080/layers/base.tar.gz".into()],
///     id: "base".into(),
///     version: "1.0.0".into(),
///     os_version: String::new(),
///     annotations: Vec::new(),
/// }];
/// let options = kist::Layers::default_options();
/// for result in store.layers().process_desired(&desired, &options, &[], |_| {})? {
///     println!("{}: {:?}", result.digest, result.outcome);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Layers {
    shared: Scoped,
}

impl Store {
    /// The store's desired-state layers.
    pub fn layers(&self) -> Layers {
        Layers {
            shared: self.shared.clone(),
        }
    }
}

impl Layers {
    /// Cached layers kept 30 days, at most 64 GiB unpacked per layer, and
    /// up to 10 minutes' wait for another caller's run.
    pub fn default_options() -> Options {
        Options {
            cache_ttl_seconds: None,
            max_unpacked: None,
            wait_ms: 600_000,
        }
    }

    /// Brings the store to `desired` (see `wit/layers.wit`): one result
    /// per desired layer, then one per stored layer that changed. A
    /// failing layer has an error in its result; the others go on.
    /// `lend` are directories `file://` URLs may name (read-only);
    /// `progress` is called after every step. Fails as a whole only when
    /// the run cannot start (`unavailable`: another run kept the layers
    /// lock past `options.wait_ms`) or the store fails.
    pub fn process_desired(
        &self,
        desired: &[LayerDesc],
        options: &Options,
        lend: &[&Path],
        mut progress: impl FnMut(&Progress),
    ) -> Result<Vec<LayerResult>> {
        let lent: Vec<(String, Lent)> = lend
            .iter()
            .map(|p| {
                let absolute = std::path::absolute(p)?;
                let path = absolute
                    .to_str()
                    .ok_or_else(|| Error::InvalidArgument(format!("{}: not UTF-8", p.display())))?
                    .to_owned();
                Ok((path, Lent::read(&absolute)))
            })
            .collect::<Result<_>>()?;
        // The wait for another run is taken in slices, each one call: a
        // single call waiting longer than the call deadline would be
        // interrupted.
        let give_up = Instant::now() + Duration::from_millis(u64::from(options.wait_ms));
        let mut held = loop {
            let left = give_up.saturating_duration_since(Instant::now());
            let slice = Options {
                wait_ms: left.min(WAIT_SLICE).as_millis() as u32,
                ..*options
            };
            let started = Held::create(&self.shared, |api, s| {
                let mut dirs = Vec::new();
                for (path, lent) in &lent {
                    let dir = lent
                        .open(s)
                        .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
                    dirs.push(LentDir {
                        path: path.clone(),
                        dir,
                    });
                }
                api.kist_content_layers()
                    .call_process_desired(s, desired, slice, &dirs)
            });
            match started {
                Err(Error::Unavailable) if Instant::now() < give_up => continue,
                other => break other?,
            }
        };
        loop {
            let step = held.call(
                |_| false,
                |api, s, run: ResourceAny| api.kist_content_layers().run().call_step(s, run),
            );
            match step.expect("the run lives until it says it is done")? {
                Some(p) => progress(&p),
                None => break,
            }
        }
        let results = held
            .call(
                |_| false,
                |api, s, run| api.kist_content_layers().run().call_results(s, run).map(Ok),
            )
            .expect("the run lives until dropped")?;
        Ok(results)
    }

    /// The stored layer `digest` ([`Error::NotFound`] if none), its tree's
    /// path absolute.
    pub fn info(&self, digest: &str) -> Result<LayerInfo> {
        let info = self
            .shared
            .call(|api, s| api.kist_content_layers().call_info(s, digest))?;
        Ok(self.absolute(info))
    }

    /// Stored layers matching any of `filters` (over `digest`, `id`,
    /// `version`, `os-version`, `state`, `annotations.<key>`; none: all).
    pub fn list(&self, filters: &[&str]) -> Result<Vec<LayerInfo>> {
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let all = self
            .shared
            .call(|api, s| api.kist_content_layers().call_list(s, &filters))?;
        Ok(all.into_iter().map(|i| self.absolute(i)).collect())
    }

    fn absolute(&self, mut info: LayerInfo) -> LayerInfo {
        info.path = PathBuf::from(&self.shared.root)
            .join(&info.path)
            .to_string_lossy()
            .into_owned();
        info
    }
}
