//! A Ceph RADOS Gateway (S3) of the test's own: one monitor, one
//! in-memory OSD and radosgw on loopback ports, started by
//! `tests/peers/rgw.sh` with all its state in a temporary directory, and
//! stopped (by the PIDs the script saved) when dropped, also when the
//! test fails.

use std::process::Command;

use crate::peer;

/// A running RGW with one user.
pub struct Rgw {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The user's access key.
    pub access_key: String,
    /// The user's secret key.
    pub secret_key: String,
}

impl Rgw {
    /// Starts a fresh, empty gateway (about a second). A start that fails
    /// is tried again on new ports, twice: the ports were free when
    /// picked, but another test's server may take one before RGW binds it.
    pub fn start() -> Self {
        let mut failures = Vec::new();
        loop {
            let dir = tempfile::tempdir().expect("a directory for RGW");
            let port = free_port_pair();
            let out = Command::new(peer("rgw"))
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .env("MEMSTORE_BYTES", (2u64 << 30).to_string())
                .output()
                .expect("running tests/peers/rgw.sh");
            if out.status.success() {
                return Self::started(dir, &out.stdout);
            }
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
            assert!(failures.len() < 3, "rgw.sh start failed: {failures:#?}");
        }
    }

    /// The gateway `rgw.sh start` started in `dir`, as its output `stdout`
    /// says.
    fn started(dir: tempfile::TempDir, stdout: &[u8]) -> Self {
        let info = String::from_utf8_lossy(stdout);
        let value = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("rgw.sh printed no {key}: {info}"))
                .to_owned()
        };
        Self {
            endpoint: value("endpoint"),
            access_key: value("access_key"),
            secret_key: value("secret_key"),
            dir,
        }
    }

    /// Creates the bucket `name`.
    pub fn create_bucket(&self, name: &str) {
        let out = self.curl(&["-X", "PUT", &format!("{}/{name}", self.endpoint)]);
        assert!(
            out.is_empty() || !out.contains("<Error>"),
            "creating {name}: {out}"
        );
    }

    /// Every key in `bucket`, in order (one page: tests keep fewer than
    /// 1,000 objects).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self.curl(&[&format!("{}/{bucket}?list-type=2", self.endpoint)]);
        assert!(!out.contains("<Error>"), "listing {bucket}: {out}");
        assert!(
            !out.contains("<IsTruncated>true"),
            "more than one page in {bucket}"
        );
        out.split("<Key>")
            .skip(1)
            .map(|k| k.split("</Key>").next().unwrap_or_default().to_owned())
            .collect()
    }

    /// The keys in `bucket` that hold content (blobs, uploads,
    /// condemnations): all but repository records (`…/repos/…`,
    /// `…/repositories/…`) and what each node keeps (`…/nodes/…`).
    pub fn content_keys(&self, bucket: &str) -> Vec<String> {
        let records = |k: &String| {
            ["repos", "repositories", "nodes"]
                .iter()
                .any(|r| k.contains(&format!("/{r}/")))
        };
        self.keys(bucket)
            .into_iter()
            .filter(|k| !records(k))
            .collect()
    }

    /// Writes `data` as `key` in `bucket`, behind kist's back.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), data).expect("writing it");
        let url = format!("{}/{bucket}/{key}", self.endpoint);
        let out = self.curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", file.path().display()),
            &url,
        ]);
        assert!(!out.contains("<Error>"), "putting {key}: {out}");
    }

    /// Removes the object `key` of `bucket`, behind kist's back.
    pub fn delete(&self, bucket: &str, key: &str) {
        let url = format!("{}/{bucket}/{key}", self.endpoint);
        let out = self.curl(&["-X", "DELETE", &url]);
        assert!(!out.contains("<Error>"), "deleting {key}: {out}");
    }

    /// The object `key` of `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .signed()
            .arg("-f")
            .arg(format!("{}/{bucket}/{key}", self.endpoint))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "getting {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The ETag of `bucket`'s object `key` (changes with every write).
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        let out = self
            .signed()
            .args(["-f", "-I"])
            .arg(format!("{}/{bucket}/{key}", self.endpoint))
            .output()
            .expect("running curl");
        let head = String::from_utf8_lossy(&out.stdout);
        head.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("etag")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no ETag for {key}: {head}"))
    }

    /// Runs the `kist` command line with `args` on the store `url`
    /// (`s3://BUCKET/PREFIX` on this gateway) from the node directory
    /// `node`: its standard output. A failure fails the test.
    pub fn kist(&self, url: &str, node: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = self.kist_output(url, node, args);
        assert!(
            out.status.success(),
            "kist {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// As [`kist`](Self::kist), whatever its exit: for commands that
    /// must fail.
    pub fn kist_output(
        &self,
        url: &str,
        node: &std::path::Path,
        args: &[&str],
    ) -> std::process::Output {
        Command::new(crate::kist_bin())
            .args(["--store", url, "--node-dir"])
            .arg(node)
            .args(args)
            .env_remove("KIST_STORE")
            .envs(self.env())
            .output()
            .expect("running kist")
    }

    /// The `AWS_*` variables a `kist` process reaches this gateway with.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The bucket `url` (`s3://BUCKET/PREFIX`) on this gateway, for a
    /// store.
    pub fn bucket(&self, url: &str) -> kist::ObjectBucket {
        self.bucket_signed_with(url, &self.secret_key)
            .expect("a bucket on the test's RGW")
    }

    /// The bucket `url` reached with the secret key `secret` (the
    /// gateway's, or one it refuses), or why it does not open.
    pub fn bucket_signed_with(&self, url: &str, secret: &str) -> kist::Result<kist::ObjectBucket> {
        kist::ObjectBucket::with_options(
            url,
            [
                ("endpoint", self.endpoint.as_str()),
                ("region", "us-east-1"),
                ("access_key_id", self.access_key.as_str()),
                ("secret_access_key", secret),
                ("allow_http", "true"),
            ],
        )
    }

    /// curl with the user's signature; the response body.
    fn curl(&self, args: &[&str]) -> String {
        let out = self.signed().args(args).output().expect("running curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the gateway's daemons: rgw.sh kills only the PIDs it saved,
    /// after checking each one's command line names this directory's
    /// ceph.conf.
    fn stop(&self) {
        let _ = Command::new(peer("rgw"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }

    /// curl signing its request as the user (curl 7.88 sends no payload
    /// hash, which RGW then rejects unless told the payload is unsigned).
    fn signed(&self) -> Command {
        let mut curl = Command::new(peer("curl"));
        curl.args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        curl
    }
}

impl Drop for Rgw {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port whose successor is free too (the monitor takes
/// PORT+1), from the ephemeral range, so never the OSD's 6800-7300.
fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = first.local_addr().expect("its address").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The RGW the tests of this process share, started on first use with
/// the bucket `shared`, and stopped when the process exits (`atexit`: a
/// static is never dropped), also after failed tests.
pub fn shared() -> &'static Rgw {
    static SHARED: std::sync::OnceLock<Rgw> = std::sync::OnceLock::new();
    extern "C" fn stop() {
        if let Some(rgw) = SHARED.get() {
            rgw.stop();
        }
    }
    SHARED.get_or_init(|| {
        let rgw = Rgw::start();
        rgw.create_bucket("shared");
        // SAFETY: `stop` is a plain function that only reads the static.
        unsafe { libc::atexit(stop) };
        rgw
    })
}

/// A store in `dir` on the shared RGW's bucket, under a prefix of its own
/// (named after `dir`, so a store opened again finds its objects).
pub fn open_on_shared_bucket(dir: &std::path::Path) -> kist::Store {
    let prefix = &crate::sha256(dir.as_os_str().as_encoded_bytes())["sha256:".len()..][..16];
    kist::Store::builder(dir)
        .object_bucket(shared().bucket(&format!("s3://shared/stores/{prefix}")))
        .open()
        .expect("a store on the shared bucket")
}
