//! `kist serve`: the HTTP server, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use kist::Store;

#[derive(ClapArgs)]
pub struct Args {
    /// Read settings from this TOML file first: its keys are the long
    /// names of these flags and of `--store` (`addr = "0.0.0.0:5000"`,
    /// `anonymous-pull = true`); a flag given here overrides the file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// The host name clients use in artifact URLs (http://<hostname>/<path>).
    #[arg(long)]
    hostname: Option<String>,
    /// How long a shutdown (SIGINT or SIGTERM) waits for requests in flight
    /// before it cuts them; a second signal cuts them at once.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    shutdown_timeout: Duration,
    /// Transfers (downloads, uploads, manifests) one client address may
    /// have in flight; more are refused (503, or 429 for the registry's
    /// `TOOMANYREQUESTS`).
    #[arg(long, alias = "downloads-per-client", default_value_t = kist_http::Limits::default().transfers_per_client)]
    transfers_per_client: usize,
    /// How long a transfer (and a mirror's fill from its upstream) may
    /// take before --min-transfer-rate applies: a connection's start, a
    /// slow first byte.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    transfer_grace: Duration,
    /// Bytes per second every transfer must average after its grace;
    /// slower ones are cut, so a client that trickles holds no slot.
    #[arg(long, default_value_t = kist_http::Limits::default().min_rate)]
    min_transfer_rate: u64,
    /// Longest a transfer may move nothing at all before it is cut (at
    /// least --transfer-grace).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    transfer_stall: Duration,
    /// An htpasswd file of bcrypt entries (`htpasswd -B`): the registry
    /// (`/v2/`) then asks every request for Basic credentials.
    #[arg(long)]
    htpasswd: Option<std::path::PathBuf>,
    /// Clients without credentials may pull from every repository (with
    /// --access-policy: pull is added to its `**` pattern).
    #[arg(long)]
    anonymous_pull: bool,
    /// A TOML access policy: which users, groups and anonymous clients may
    /// pull, push and delete in which repositories (see the README). Read
    /// again on SIGHUP, as the htpasswd file is.
    #[arg(long)]
    access_policy: Option<std::path::PathBuf>,
    /// Accept bearer tokens from this token server (the distribution token
    /// spec): clients without one are sent there (`WWW-Authenticate:
    /// Bearer realm=...`). Needs --token-service, --token-issuer and
    /// --token-key.
    #[arg(long, requires_all = ["token_service", "token_issuer", "token_key"])]
    token_realm: Option<String>,
    /// The name of this registry to the token server: challenges name it
    /// as `service`, tokens must carry it as `aud`.
    #[arg(long, requires = "token_realm")]
    token_service: Option<String>,
    /// The `iss` tokens must carry.
    #[arg(long, requires = "token_realm")]
    token_issuer: Option<String>,
    /// PEM public keys or certificates tokens may be signed with (RS256,
    /// RS384, RS512, ES256, ES384).
    #[arg(long, requires = "token_realm")]
    token_key: Option<std::path::PathBuf>,
    /// Be a pull-through mirror of this registry (`https://registry-1.docker.io`):
    /// what the store lacks is fetched from it, verified and stored as if
    /// pushed; tags are revalidated after --mirror-ttl. Pushes and deletes
    /// are refused unless --mirror-allow-push.
    #[arg(long)]
    mirror: Option<String>,
    /// Another origin the upstream may send the mirror to: its token
    /// realm, a blob CDN (`https://auth.docker.io`); may be repeated.
    #[arg(long, requires = "mirror")]
    mirror_allow: Vec<String>,
    /// The user name for the upstream (Basic, or for its token realm).
    #[arg(long, requires_all = ["mirror", "mirror_password_file"])]
    mirror_username: Option<String>,
    /// A file holding the upstream password (not given on the command
    /// line, where `ps` shows it).
    #[arg(long, requires = "mirror_username")]
    mirror_password_file: Option<std::path::PathBuf>,
    /// How long a mirrored tag is served before the upstream is asked
    /// whether it moved.
    #[arg(long, default_value = "5m", value_parser = crate::parse_duration, requires = "mirror")]
    mirror_ttl: Duration,
    /// How long a mirrored image is kept after a client last pulled its
    /// manifest (distribution's proxy keeps blobs 7 days from their
    /// fetch). Then it is cached content: removed by the collection after
    /// the store's cache TTL, or earlier, oldest first, when a quota
    /// (`kist quota set --holder registry/ 50G`) needs the space; a
    /// later pull fetches it again.
    #[arg(long, default_value = "7d", value_parser = crate::parse_duration, requires = "mirror")]
    mirror_keep: Duration,
    /// With --mirror: accept pushes and deletes too.
    #[arg(long, requires = "mirror")]
    mirror_allow_push: bool,
    /// Listen on a non-loopback address without --htpasswd or tokens:
    /// anyone who reaches it may push, overwrite tags and delete (unless
    /// --access-policy says otherwise).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Run a collection (what `kist gc` does) this often; `0s` turns it off.
    #[arg(long, default_value = "1h", value_parser = crate::parse_duration)]
    gc_interval: Duration,
    /// Also serve containerd's Content and Snapshots services (proxy
    /// plugins) on this unix socket, mode 0600.
    #[arg(long)]
    containerd: Option<std::path::PathBuf>,
    /// With --containerd: this group (a number) may connect too (mode 0660).
    #[arg(long, requires = "containerd")]
    socket_group: Option<u32>,
    /// With --containerd: serve only the socket, no HTTP.
    #[arg(long, requires = "containerd")]
    no_http: bool,
    /// Serve `/metrics` (OpenMetrics text, for Prometheus) and `/healthz`
    /// on this address instead of beside the registry. They need no
    /// credentials and show counts by route template, never names.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Write one JSON line per request (method, path, route, status,
    /// bytes, duration, client, user) to this file; `-`: standard error.
    #[arg(long)]
    access_log: Option<std::path::PathBuf>,
}

/// Serves `store` on `args.addr`; prints the address it listens on.
pub fn run(store: &Store, args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.config {
        // Its settings are in `args` already (see `config_file`).
        eprintln!("kist: settings from {}", path.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let limits = kist_http::Limits {
        transfers_per_client: args.transfers_per_client,
        min_rate: args.min_transfer_rate,
        grace: args.transfer_grace,
        stall: args.transfer_stall.max(args.transfer_grace),
        ..Default::default()
    };
    let config = kist_http::Config {
        shutdown_timeout: args.shutdown_timeout,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(kist_http::Tls::from_pem_files(cert, key)?),
            _ => None,
        },
        ..Default::default()
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let access = std::sync::Arc::new(kist_http::Access {
        htpasswd: match &args.htpasswd {
            Some(path) => Some(
                kist_http::Htpasswd::load(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        },
        anonymous_pull: args.anonymous_pull,
        policy: match &args.access_policy {
            Some(path) => Some(
                kist_http::PolicyFile::load(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        },
        tokens: match (
            &args.token_realm,
            &args.token_service,
            &args.token_issuer,
            &args.token_key,
        ) {
            (Some(realm), Some(service), Some(issuer), Some(key)) => Some(
                kist_http::Tokens::load(realm, service, issuer, key)
                    .with_context(|| format!("reading {}", key.display()))?,
            ),
            _ => None,
        },
    });
    let authenticated = access.authenticates();
    if !authenticated && !args.no_http && !args.addr.ip().is_loopback() && !args.insecure_no_auth {
        anyhow::bail!(
            "{} is not a loopback address and the registry has no authentication: \
             give --htpasswd FILE or --token-realm URL, or --insecure-no-auth to serve it open anyway",
            args.addr
        );
    }
    let log = match &args.access_log {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(kist_http::AccessLog::Stderr),
        Some(path) => Some(
            kist_http::AccessLog::file(path)
                .with_context(|| format!("the access log {}", path.display()))?,
        ),
    };
    let metrics = kist_http::Metrics::new(store);
    let mirror = match &args.mirror {
        None => None,
        Some(upstream) => {
            let credentials = match (&args.mirror_username, &args.mirror_password_file) {
                (Some(user), Some(file)) => {
                    let password = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    Some((
                        user.clone(),
                        password.trim_end_matches(['\n', '\r']).to_owned(),
                    ))
                }
                _ => None,
            };
            let upstream = kist_http::Upstream::new(upstream, &args.mirror_allow, credentials)
                .map_err(anyhow::Error::msg)?;
            let mirror = kist_http::Mirror::new(
                upstream,
                args.mirror_ttl,
                args.mirror_keep,
                args.mirror_allow_push,
            );
            Some(std::sync::Arc::new(mirror))
        }
    };
    let mut router = kist_http::router_with(store, access.clone(), mirror);
    if args.metrics_addr.is_none() {
        router = router.merge(metrics.routes());
    }
    let router = kist_http::observed(router, &metrics, log);
    runtime.block_on(async {
        // One admission for every server of the process: their budgets are
        // the process's memory and descriptors.
        let admission = kist_http::Admission::start(limits);
        metrics.watch(&admission);
        let (first, second) = signals()?;
        reload_on_hangup(access)?;
        // The first signal stops every server.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            first.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let containerd = match &args.containerd {
            Some(path) => {
                let options = kist_grpc::SocketOptions {
                    path: path.clone(),
                    group: args.socket_group,
                };
                // Bound now, so a socket in use fails the command at once.
                let socket = kist_grpc::bind(&options)
                    .with_context(|| format!("the containerd socket {}", path.display()))?;
                let (store, stop) = (store.clone(), stopped(stop_rx.clone()));
                let (grace, admission) = (args.shutdown_timeout, admission.clone());
                let served = tokio::spawn(async move {
                    kist_grpc::serve(&store, socket, &admission, stop, grace).await
                });
                println!(
                    "containerd services (content, snapshot) on unix://{}",
                    path.display()
                );
                Some(served)
            }
            None => None,
        };
        let metrics_server = match args.metrics_addr {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} for metrics"))?;
                let addr = listener.local_addr()?;
                if !addr.ip().is_loopback() {
                    eprintln!(
                        "kist: WARNING: /metrics and /healthz on {addr} have no authentication: \
                         whoever reaches it sees request counts and store usage"
                    );
                }
                println!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
                let router = kist_http::observed(metrics.routes(), &metrics, None);
                let (config, admission) = (config.clone(), admission.clone());
                let stop = stopped(stop_rx.clone());
                Some(tokio::spawn(async move {
                    let force = std::future::pending();
                    kist_http::serve(listener, router, &config, &admission, stop, force).await
                }))
            }
            None => None,
        };
        let collector = collect_every(store, args.gc_interval, &metrics);
        let index = sync_index_every(store, Duration::from_secs(1));
        if args.no_http {
            stopped(stop_rx.clone()).await;
        } else {
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("listening on {}", args.addr))?;
            let addr = listener.local_addr()?;
            warn_if_exposed(authenticated, config.tls.is_some(), addr);
            let hostname = args.hostname.unwrap_or_else(|| addr.to_string());
            // Tests and scripts read this line to find a port picked with :0.
            println!(
                "listening on {scheme}://{addr} (artifact URLs: {scheme}://{hostname}/<path>)"
            );
            let stop = stopped(stop_rx.clone());
            kist_http::serve(listener, router, &config, &admission, stop, second).await?;
        }
        if let Some(served) = containerd {
            served.await??;
        }
        if let Some(served) = metrics_server {
            served.await??;
        }
        if let Some(c) = collector {
            c.abort();
        }
        // What the last second journaled is written by `main`, as after
        // every command.
        index.abort();
        eprintln!("kist: shut down");
        anyhow::Ok(())
    })?;
    // Connections cut at the deadline may leave a chunk read in flight.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Says on stderr, loudly, what a client on the network can do: anything,
/// without credentials (`authenticated` false), or send its credentials in
/// cleartext (Basic authentication over plain HTTP off loopback). `addr`
/// is the address bound (the port a `:0` picked).
fn warn_if_exposed(authenticated: bool, tls: bool, addr: SocketAddr) {
    if !authenticated {
        eprintln!(
            "kist: WARNING: the registry (/v2/) has no authentication: whoever reaches {addr} may \
             push, retag and delete (give --htpasswd FILE or --token-realm URL)"
        );
    } else if !tls && !addr.ip().is_loopback() {
        eprintln!(
            "kist: WARNING: the registry asks for passwords over plain HTTP on {addr}: they cross \
             the network in cleartext (give --tls-cert and --tls-key)"
        );
    }
}

/// Runs a collection every `interval` (none if it is zero) on the blocking
/// pool; each is stepwise, so writers are never held up for long.
fn collect_every(
    store: &Store,
    interval: Duration,
    metrics: &kist_http::Metrics,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let (store, metrics) = (store.clone(), metrics.clone());
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await; // the first tick is now: wait one interval
        loop {
            ticks.tick().await;
            let store = store.clone();
            let ran = tokio::task::spawn_blocking(move || {
                let removed = store.retention().collect(false)?;
                removed
                    .map(|r| r.map(|r| r.bytes))
                    .sum::<kist::Result<u64>>()
            })
            .await;
            match ran {
                Ok(Ok(freed)) => {
                    tracing::info!("collection freed {freed} bytes");
                    metrics.collected(Some(freed));
                }
                Ok(Err(e)) => {
                    tracing::warn!("collection failed: {e}");
                    metrics.collected(None);
                }
                Err(e) => {
                    tracing::warn!("collection panicked: {e}");
                    metrics.collected(None);
                }
            }
        }
    }))
}

/// Writes tag changes into `index.json` every `interval` (tags are
/// journaled first, and `index.json` rewritten in batches), so tools that
/// read the layout themselves see a pushed tag a moment later.
fn sync_index_every(store: &Store, interval: Duration) -> tokio::task::JoinHandle<()> {
    let registry = store.registry();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let registry = registry.clone();
            match tokio::task::spawn_blocking(move || registry.sync_index()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("writing tags into index.json failed: {e}"),
                Err(e) => tracing::warn!("writing tags into index.json panicked: {e}"),
            }
        }
    })
}

/// Reads the htpasswd and policy files again on every SIGHUP, without
/// dropping a connection; a file that does not read or check stays as it
/// was.
fn reload_on_hangup(access: std::sync::Arc<kist_http::Access>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let access = access.clone();
            match tokio::task::spawn_blocking(move || access.reload()).await {
                Ok(Ok(())) => eprintln!("kist: SIGHUP: read the htpasswd and policy files again"),
                Ok(Err(e)) => eprintln!(
                    "kist: WARNING: SIGHUP: reading the htpasswd and policy files again: {e}; that file stays as it was"
                ),
                Err(e) => eprintln!("kist: WARNING: SIGHUP: reading the access files again: {e}"),
            }
        }
    });
    Ok(())
}

/// Two futures: the first SIGINT or SIGTERM, and the one after it.
fn signals() -> std::io::Result<(
    impl std::future::Future<Output = ()>,
    impl std::future::Future<Output = ()>,
)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for tx in [first_tx, second_tx] {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(());
        }
    });
    Ok((
        async {
            let _ = first_rx.await;
        },
        async {
            let _ = second_rx.await;
        },
    ))
}
