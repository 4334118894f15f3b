"""oras-py against a kist registry: push an artifact (chunked), attach a
referrer whose subject is that artifact, list the referrers, pull.

    python oras_roundtrip.py HOST:PORT WORKDIR

Prints one JSON line with what it saw; the Rust test asserts on it.
"""
import json
import os
import sys

import oras.client
import oras.oci
import requests

host, work = sys.argv[1], sys.argv[2]
os.chdir(work)
with open("artifact.txt", "w") as f:
    f.write("artifact data\n" * 1000)
with open("signature.txt", "w") as f:
    f.write("signed\n")

client = oras.client.OrasClient(hostname=host, insecure=True)
pushed = client.push(
    target=f"{host}/oras/demo:v1",
    files=["artifact.txt"],
    disable_path_validation=True,
    do_chunked=True,
    chunk_size=4096,
)
manifest = requests.get(f"http://{host}/v2/oras/demo/manifests/v1")
subject = oras.oci.Subject(
    mediaType=manifest.headers["Content-Type"],
    digest=manifest.headers["Docker-Content-Digest"],
    size=len(manifest.content),
)
attached = client.push(
    target=f"{host}/oras/demo:signature",
    files=["signature.txt"],
    subject=subject,
    disable_path_validation=True,
)
# oras-py has no referrers call: the spec's endpoint, as oras-go uses it.
referrers = requests.get(f"http://{host}/v2/oras/demo/referrers/{subject.digest}")
out = os.path.join(work, "pulled")
files = client.pull(target=f"{host}/oras/demo:v1", outdir=out)
print(json.dumps({
    "pushed": pushed.status_code,
    "attached": attached.status_code,
    "oci_subject": attached.headers.get("OCI-Subject"),
    "subject": subject.digest,
    "referrers_status": referrers.status_code,
    "referrers": referrers.json(),
    "pulled": open(os.path.join(out, "artifact.txt")).read() == "artifact data\n" * 1000,
    "files": [os.path.basename(f) for f in files],
}))
