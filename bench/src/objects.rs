//! Object storage: `kist serve --store s3://…` against docker-registry's
//! S3 driver, with its defaults and tuned (`multipartcopythresholdsize`
//! 5 GiB, which makes Ceph copy by reference), all on one Ceph RGW
//! started here, each registry behind its own counting relay: pushes of a
//! layer, interleaved, with the bytes each sends to the object store, the
//! bytes Ceph writes (the OSD's `op_w_in_bytes`) and the S3 requests, per
//! push.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::link::Link;
use crate::measure::{Contender, interleave, time};
use crate::registry::{pull, push, random_file};
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::{Tools, output};

/// A Ceph RGW of this run (`tests/peers/rgw.sh`), stopped when dropped.
pub struct Gateway {
    dir: PathBuf,
    /// Its S3 endpoint.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

/// A port whose next one is free too (RGW's S3 port, then its monitor's).
fn free_port_pair() -> anyhow::Result<u16> {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
}

impl Gateway {
    /// Starts one with its state in `dir`, its OSD holding up to `bytes`.
    fn start(dir: &Path, bytes: u64) -> anyhow::Result<Self> {
        // Tried on new ports (and in a new directory) twice more if it
        // fails: the ports were free when picked, but anything may take
        // one before RGW binds it (the monitor's once was an outgoing
        // connection's).
        let mut failures = Vec::new();
        let (dir, info) = loop {
            let dir = dir.join(failures.len().to_string());
            std::fs::create_dir_all(&dir)?;
            let started = output(
                Command::new("rgw")
                    .arg("start")
                    .arg(&dir)
                    .arg(free_port_pair()?.to_string())
                    .env("MEMSTORE_BYTES", bytes.to_string()),
            );
            match started {
                Ok(info) => break (dir, info),
                Err(e) if failures.len() < 2 => failures.push(e),
                Err(e) => {
                    return Err(e.context(format!(
                        "starting RGW (tests/peers/install.sh installs it); before: {failures:#?}"
                    )));
                }
            }
        };
        let info = String::from_utf8(info)?;
        let value = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
                .with_context(|| format!("rgw.sh printed no {key}: {info}"))
        };
        Ok(Self {
            dir,
            endpoint: value("endpoint")?,
            access_key: value("access_key")?,
            secret_key: value("secret_key")?,
        })
    }

    /// The `AWS_*` variables a `kist` process reaches it with, through
    /// `endpoint` (a relay's, or its own).
    pub fn env<'a>(&'a self, endpoint: &'a str) -> [(&'static str, &'a str); 5] {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
    }

    /// Creates the bucket `name` (nothing if this user has it).
    fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let answer = output(
            Command::new("curl")
                .args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
                .arg(format!("{}:{}", self.access_key, self.secret_key))
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(["-X", "PUT", &format!("{}/{name}", self.endpoint)]),
        )?;
        let answer = String::from_utf8_lossy(&answer);
        let made = !answer.contains("<Error>") || answer.contains("BucketAlready");
        anyhow::ensure!(made, "creating {name}: {answer}");
        Ok(())
    }

    /// Bytes the OSD has written so far.
    fn written(&self) -> anyhow::Result<u64> {
        let socket = self.dir.join("run/osd.0.asok");
        let dump = output(
            Command::new("ceph")
                .arg("--admin-daemon")
                .arg(socket)
                .args(["perf", "dump"]),
        )?;
        let dump: serde_json::Value = serde_json::from_slice(&dump)?;
        dump["osd"]["op_w_in_bytes"]
            .as_u64()
            .context("no osd.op_w_in_bytes in the OSD's perf dump")
    }

    /// Empties the bucket `name`, freeing its data at once (not through
    /// RGW's garbage collection: the in-memory OSD blocks writes when full).
    fn purge(&self, name: &str) -> anyhow::Result<()> {
        output(
            Command::new("radosgw-admin")
                .arg("-c")
                .arg(self.dir.join("ceph.conf"))
                .args([
                    "bucket",
                    "rm",
                    "--purge-objects",
                    "--bypass-gc",
                    "--bucket",
                    name,
                ]),
        )?;
        self.create_bucket(name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // rgw.sh stops only the PIDs it saved for this directory.
        let _ = Command::new("rgw").arg("stop").arg(&self.dir).status();
    }
}

/// A registry on its own bucket, behind a relay that counts what it
/// sends the object store.
pub struct OnBucket {
    pub registry: Running,
    bucket: String,
    pub relay: Link,
}

/// What one contender's pushes cost, summed.
#[derive(Default, Clone, Copy)]
struct Cost {
    pushed: u64,
    sent: u64,
    written: u64,
    requests: u64,
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
    collected: usize,
) -> anyhow::Result<()> {
    let dir = crate::tools::scratch(work, "objects")?;
    // Room for a push written twice and its upload's parts (each bucket is
    // purged after its push).
    let rgw = Gateway::start(&dir.join("rgw"), size * 4 + (2 << 30))?;
    let host = rgw.endpoint.trim_start_matches("http://").to_owned();
    // A node of kist on the bucket `name` with its own directory `node`,
    // or docker-registry (tuned or not) on it; the bucket made if new.
    let registry = |name: &str, tuned: Option<bool>, node: &str| -> anyhow::Result<OnBucket> {
        rgw.create_bucket(name)?;
        let relay = Link::start(&host, u64::MAX)?;
        let registry = match tuned {
            None => {
                let envs = rgw.env(&relay.base);
                let node = dir.join(node);
                let node = node.to_str().context("a UTF-8 scratch path")?;
                let store = format!("s3://{name}/registry");
                let flags = ["--node-dir", node];
                registry_peers::kist_on(&tools.kist, store.as_ref(), &flags, &envs)?
            }
            Some(tuned) => {
                let threshold = if tuned {
                    "    multipartcopythresholdsize: 5368709120\n"
                } else {
                    ""
                };
                let storage = format!(
                    "  s3:\n    regionendpoint: {}\n    region: us-east-1\n    bucket: {name}\n    accesskey: {}\n    secretkey: {}\n    secure: false\n    v4auth: true\n    rootdirectory: /r\n{threshold}",
                    relay.base, rgw.access_key, rgw.secret_key
                );
                registry_peers::distribution_with(&dir.join(name), &storage)?
            }
        };
        Ok(OnBucket {
            registry,
            bucket: name.to_owned(),
            relay,
        })
    };
    let registries = [
        (
            "docker-registry S3, tuned",
            registry("dreg-tuned", Some(true), "")?,
        ),
        (
            "docker-registry S3, defaults",
            registry("dreg-defaults", Some(false), "")?,
        ),
        (
            "kist serve --store s3://",
            registry("kist", None, "node-a")?,
        ),
    ];
    let file = dir.join("layer");
    let costs: Vec<RefCell<Cost>> = registries.iter().map(|_| RefCell::default()).collect();
    let contenders = registries
        .iter()
        .zip(&costs)
        .enumerate()
        .map(|(i, ((name, r), cost))| {
            let (file, rgw) = (&file, &rgw);
            Contender::new(*name, move |rep| {
                // New bytes every time: nothing is deduplicated.
                let digest = random_file(file, size, (rep * 3 + i) as u64)?;
                let (sent, requests) = (r.relay.sent(), r.relay.carried().1);
                let written = rgw.written()?;
                let took = time(|| push(&r.registry, "bench/layer", file, &digest, false))?;
                let mut c = cost.borrow_mut();
                c.pushed += size;
                c.sent += r.relay.sent() - sent;
                c.requests += r.relay.carried().1 - requests;
                c.written += rgw.written()? - written;
                rgw.purge(&r.bucket)?;
                Ok(took)
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    std::fs::remove_file(&file)?;
    let mib = size >> 20;
    report.section(
        &format!("Registry push of a {mib} MiB layer to Ceph RGW (S3), monolithic"),
        Unit::Bytes(size),
        &samples,
    );
    report.note("Per push, all through the same counting relay to the same RGW:");
    report.line("| registry | sent to S3 / byte pushed | Ceph wrote / byte pushed | S3 requests |");
    report.line("|---|---|---|---|");
    for ((name, _), cost) in registries.iter().zip(&costs) {
        let c = cost.borrow();
        let per = |n: u64| n as f64 / c.pushed as f64;
        report.line(&format!(
            "| {name} | {:.3} | {:.3} | {:.0} |",
            per(c.sent),
            per(c.written),
            c.requests as f64 / reps as f64
        ));
    }
    pulls(report, tools, &dir, &registry, size, reps)?;
    crate::object_requests::run(report, &dir, &registry)?;
    crate::object_collection::run(report, tools, &dir, &rgw, &registry, collected)
}

/// How a registry on a bucket is started: `(bucket, tuned docker-registry
/// or kist (None), kist's node directory)`.
pub type Start<'a> = &'a dyn Fn(&str, Option<bool>, &str) -> anyhow::Result<OnBucket>;

/// Pulls of one blob: cold (through a kist node that never had it, a new
/// one each time, against docker-registry tuned, which streams it from
/// the bucket) and cached (the same kist node again, against `kist serve`
/// on a local directory).
fn pulls(
    report: &mut Report,
    tools: &Tools,
    dir: &Path,
    registry: Start<'_>,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let file = dir.join("pulled");
    let digest = random_file(&file, size, 1_000)?;
    let pusher = registry("pulls", None, "pull-pusher")?;
    let dreg = registry("pulls-dreg", Some(true), "")?;
    let local = registry_peers::kist(&tools.kist, &dir.join("pull-local"))?;
    for r in [&pusher.registry, &dreg.registry, &local] {
        push(r, "bench/pulled", &file, &digest, false)?;
    }
    std::fs::remove_file(&file)?;
    let fresh: RefCell<Option<OnBucket>> = RefCell::default();
    let cold = |rep: usize| -> anyhow::Result<std::time::Duration> {
        let node = registry("pulls", None, &format!("pull-node-{rep}"))?;
        // Warm, as a node in service is: its component instantiated.
        let _ = ureq::get(&format!("{}/v2/bench/none/tags/list", node.registry.base)).call();
        let took = time(|| pull(&node.registry, "bench/pulled", &digest).map(drop))?;
        *fresh.borrow_mut() = Some(node);
        Ok(took)
    };
    let samples = interleave(
        reps,
        vec![
            Contender::new("docker-registry S3, tuned", |_| {
                time(|| pull(&dreg.registry, "bench/pulled", &digest).map(drop))
            }),
            Contender::new("kist serve --store s3://, a node without it", cold),
        ],
    )?;
    let mib = size >> 20;
    report.section(
        &format!("Registry pull of a {mib} MiB layer from Ceph RGW (S3), cold"),
        Unit::Bytes(size),
        &samples,
    );
    let cached = |r: &Running| time(|| pull(r, "bench/pulled", &digest).map(drop));
    // More repetitions than the rest: a pull from the page cache takes
    // half a second, and with three the one that reads the disk (each
    // side's first) and one noisy sample decided the median.
    let samples = interleave(
        reps.max(7),
        vec![
            Contender::new("kist serve, local directory", |_| cached(&local)),
            Contender::new("kist serve --store s3://, the node that has it", |_| {
                let node = fresh.borrow();
                cached(&node.as_ref().context("a node that pulled it")?.registry)
            }),
        ],
    )?;
    report.section(
        &format!("Registry pull of a {mib} MiB layer, cached on the node"),
        Unit::Bytes(size),
        &samples,
    );
    Ok(())
}
