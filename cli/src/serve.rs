//! `kist serve`: the HTTP server, until SIGINT or SIGTERM.

use std::net::SocketAddr;

use clap::Args as ClapArgs;
use kist::Store;

#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// The host name clients use in artifact URLs (http://<hostname>/<path>).
    #[arg(long)]
    hostname: Option<String>,
}

/// Serves `store` on `args.addr`; prints the address it listens on.
pub fn run(store: &Store, args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        let addr = listener.local_addr()?;
        let hostname = args.hostname.unwrap_or_else(|| addr.to_string());
        // Tests and scripts read this line to find a port picked with :0.
        println!("listening on http://{addr} (artifact URLs: http://{hostname}/<path>)");
        kist_http::serve(listener, kist_http::router(store), shutdown()).await?;
        eprintln!("kist: shut down");
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
