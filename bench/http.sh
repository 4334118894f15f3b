#!/usr/bin/env bash
# HTTP download of a 256 MiB artifact: `kist serve` against Python's
# http.server serving the same blob file, and curl reading the file
# directly (file://, the no-network limit). Interleaved repetitions;
# prints each contender's median and its ratio to http.server.
#
#   bench/http.sh [REPS]     (default 5; needs ~600 MiB free in $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
cargo build --release --locked -q -p kist-cli
kist=$PWD/target/release/kist
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/src"
head -c 256M /dev/urandom > "$work/src/data.bin"
export KIST_STORE=$work/store
"$kist" artifact archive "$work/src" --kind Bucket --namespace bench --name big \
    --revision r1 --file big.tar.gz > /dev/null
rm "$work/src/data.bin"
path=bucket/bench/big/big.tar.gz
blob=$("$kist" --format json artifact ls | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"].split(":")[1])')

"$kist" serve --addr 127.0.0.1:0 > "$work/kist.out" 2>&1 &
pids+=($!)
(cd "$work/store/blobs/sha256" && exec python3 -m http.server 0 --bind 127.0.0.1) > "$work/py.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    grep -q listening "$work/kist.out" && grep -q port "$work/py.out" && break
    sleep 0.1
done
kist_url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/kist.out")/$path
py_url=http://127.0.0.1:$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$work/py.out")/$blob
file_url=file://$work/store/blobs/sha256/$blob

declare -A times
for _ in $(seq "$reps"); do
    for c in kist python file; do
        case $c in kist) url=$kist_url ;; python) url=$py_url ;; file) url=$file_url ;; esac
        t=$(curl -sf -o /dev/null -w '%{time_total}' "$url")
        times[$c]+="$t "
    done
done
size=$(stat -c %s "$work/store/blobs/sha256/$blob")
python3 - "$size" "${times[kist]}" "${times[python]}" "${times[file]}" <<'PY'
import statistics, sys
size = int(sys.argv[1])
names = ["kist serve", "python3 -m http.server", "curl file:// (no network)"]
runs = [[float(t) for t in arg.split()] for arg in sys.argv[2:]]
base = statistics.median(runs[1])
print(f"{'contender':28} {'median s':>9} {'MiB/s':>8} {'vs http.server':>15}")
for name, ts in zip(names, runs):
    m = statistics.median(ts)
    print(f"{name:28} {m:9.3f} {size / m / 2**20:8.0f} {base / m:14.2f}x")
PY
