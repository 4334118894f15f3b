//! The node's side of a slow link: a network namespace joined to this
//! one by a veth pair, both ends shaped by the kernel's token bucket
//! (`tc qdisc … tbf`) to the link's rate in each direction. The round
//! trip is added by the relay in front of each server ([`crate::link`]),
//! as `netem` is not available here.
//!
//! A pull runs on the node's side by entering the namespace on the
//! calling thread only ([`NodeNet::run`]: `setns(2)` moves one thread
//! into a network namespace), so every process it starts (kist,
//! containerd and its `ctr`, ostree, casync) is on the node's side while
//! the servers and their relays stay here. Removed when dropped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, ensure};

use crate::tools::output;

/// A namespace for the node, its veth pair and their shaping.
pub struct NodeNet {
    name: String,
    veth: String,
    /// The address of this side of the pair: relays listen on it, and
    /// the node reaches them there.
    pub server_ip: String,
}

/// Runs `ip ARGS` (or `tc`), which must succeed.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    output(Command::new(program).args(args)).map(drop)
}

impl NodeNet {
    /// A new namespace whose link to this one carries `rate_bits` bits a
    /// second each way.
    pub fn create(rate_bits: u64) -> anyhow::Result<Self> {
        let pid = std::process::id();
        // A subnet and names of this process (names: at most 15 bytes).
        let subnet = format!("10.213.{}", pid % 250);
        let net = Self {
            name: format!("kist-bench-{pid}"),
            veth: format!("kb{pid}a"),
            server_ip: format!("{subnet}.1"),
        };
        let peer = format!("kb{pid}b");
        let (name, veth) = (net.name.as_str(), net.veth.as_str());
        run("ip", &["netns", "add", name])?;
        run(
            "ip",
            &["link", "add", veth, "type", "veth", "peer", "name", &peer],
        )?;
        run("ip", &["link", "set", &peer, "netns", name])?;
        run(
            "ip",
            &["addr", "add", &format!("{subnet}.1/24"), "dev", veth],
        )?;
        run("ip", &["link", "set", veth, "up"])?;
        run(
            "ip",
            &[
                "-n",
                name,
                "addr",
                "add",
                &format!("{subnet}.2/24"),
                "dev",
                &peer,
            ],
        )?;
        run("ip", &["-n", name, "link", "set", &peer, "up"])?;
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        // A burst of a few packets and a queue of at most 50 ms: a shaped
        // uplink, not a deep buffer that would hide the round trips.
        let rate = format!("{rate_bits}bit");
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "32kb", "latency", "50ms",
        ];
        run("tc", &[&["qdisc", "add", "dev", veth][..], &tbf].concat())?;
        run(
            "tc",
            &[&["-n", name, "qdisc", "add", "dev", &peer][..], &tbf].concat(),
        )?;
        Ok(net)
    }

    /// Runs `f` on this thread inside the namespace, then comes back.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> anyhow::Result<R> {
        let here = File::open("/proc/thread-self/ns/net")?;
        let there = File::open(format!("/run/netns/{}", self.name))?;
        enter(&there)?;
        let result = f();
        enter(&here).context("coming back from the node's namespace")?;
        Ok(result)
    }
}

/// Moves this thread into the network namespace `ns`.
fn enter(ns: &File) -> anyhow::Result<()> {
    // SAFETY: a valid descriptor of a network namespace; setns only
    // changes this thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
    Ok(())
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = run("ip", &["link", "del", &self.veth]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
