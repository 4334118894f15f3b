//! The compiled component and the engine that runs it, shared by every
//! store in the process.
//!
//! Compiling the component takes ~130 ms; loading a compiled artifact from
//! disk takes ~0.1 ms. So the compiled form is cached on disk, keyed by the
//! component's hash and the engine's compatibility hash (which covers the
//! wasmtime version and configuration), written atomically, and reused
//! through one `InstancePre` (a new instance costs microseconds).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::StoreCoreIndices;
use crate::bindings::lending::LendingHostIndices;
use crate::ctx::KistCtx;
use crate::error::{Error, Result};

/// The store component built from `guest/` with this crate.
const EMBEDDED: &[u8] = crate::components::STORE;
/// sha256 of [`EMBEDDED`], computed by the build script.
const EMBEDDED_SHA256: &str = env!("KIST_COMPONENT_SHA256");

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// An engine with the component loaded and linked.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<KistCtx>,
    /// Where `store-core`'s exports are in the component.
    pub(crate) core: StoreCoreIndices,
    /// Where `lending` is, if the component lends to this host: it imports
    /// `lender` (the store built alone does; a composition that plugs in
    /// the portable capabilities lends to itself, and its blobs are read
    /// through `store.reader`).
    pub(crate) lending: Option<LendingHostIndices>,
}

impl Runtime {
    /// The runtime for the embedded component, created once per process.
    pub(crate) fn embedded() -> Result<Arc<Runtime>> {
        static SHARED: OnceLock<Result<Arc<Runtime>>> = OnceLock::new();
        SHARED
            .get_or_init(|| Runtime::new(EMBEDDED, EMBEDDED_SHA256).map(Arc::new))
            .clone()
    }

    /// The runtime for another build of the store component, created once
    /// per process and component.
    pub(crate) fn for_component(component: &[u8]) -> Result<Arc<Runtime>> {
        use sha2::Digest;
        static LOADED: Mutex<BTreeMap<String, Arc<Runtime>>> = Mutex::new(BTreeMap::new());
        let sha256 = hex::encode(sha2::Sha256::digest(component));
        if sha256 == EMBEDDED_SHA256 {
            return Self::embedded();
        }
        let mut loaded = LOADED.lock().expect("runtime cache lock");
        if let Some(runtime) = loaded.get(&sha256) {
            return Ok(Arc::clone(runtime));
        }
        let runtime = Arc::new(Runtime::new(component, &sha256)?);
        loaded.insert(sha256, Arc::clone(&runtime));
        Ok(runtime)
    }

    fn new(component: &[u8], sha256: &str) -> Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        start_ticker(&engine);
        let component = load(&engine, component, sha256)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        crate::capabilities::add_to_linker(&mut linker)?;
        let lends_to_host = component
            .component_type()
            .imports(&engine)
            .any(|(name, _)| name.starts_with("kist:content/lender@"));
        let pre = linker.instantiate_pre(&component)?;
        let core = StoreCoreIndices::new(&pre)?;
        let lending = match lends_to_host {
            true => Some(LendingHostIndices::new(&pre)?),
            false => None,
        };
        Ok(Self {
            engine,
            pre,
            core,
            lending,
        })
    }
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("kist-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Where compiled components are cached: `$KIST_CACHE_DIR`, else the
/// user's cache directory; `None` when neither is known.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KIST_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("kist"))
}

/// Loads the compiled form of `component` from the cache, compiling and
/// caching it on a miss. A cache that cannot be read or written only costs
/// time.
fn load(engine: &Engine, component: &[u8], sha256: &str) -> Result<Component> {
    let Some(dir) = cache_dir() else {
        return Ok(Component::new(engine, component)?);
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("{}-{:016x}.cwasm", &sha256[..32], h.finish()));
    if path.exists() {
        // SAFETY: the file is named by the hash of the component and of the
        // engine configuration and was written (atomically) by `store` below
        // from `Component::serialize`; wasmtime also checks its header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(
                "ignoring unusable compiled component {}: {e}",
                path.display()
            ),
        }
    }
    let compiled = Component::new(engine, component)?;
    if let Err(e) = store(&dir, &path, &compiled) {
        tracing::debug!(
            "not caching the compiled component in {}: {e}",
            dir.display()
        );
    }
    Ok(compiled)
}

fn store(dir: &Path, path: &Path, compiled: &Component) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &compiled.serialize()?)?;
    tmp.persist(path).map_err(|e| Error::Io(e.to_string()))?;
    Ok(())
}
