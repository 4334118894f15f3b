#!/usr/bin/env bash
# Runs kist's benchmark suite with its peers and writes bench/RESULTS.md.
#
#   bench/run.sh            full run (about 15 minutes here), as root for containerd
#   bench/run.sh --quick    a tiny run that only checks every scenario works
#
# It builds kist and the bench in release mode, installs containerd,
# docker-registry and skopeo (the registry scenario's peers) from Debian if
# missing, starts a private containerd (root, state and socket in
# a temporary directory; GC never triggered by mutations, so lease-less
# blobs stay), and stops it by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
out=bench/RESULTS.md
if [[ "${1:-}" == "--quick" ]]; then
    quick=(--quick)
    out=$(mktemp)
fi

cargo build --release --locked -p kist-cli -p kist-bench
# The test peers the scenarios share (Ceph RGW for the object storage
# scenario, as `rgw`), installed if missing, found first on the PATH.
if [[ $(id -u) == 0 ]]; then bash tests/peers/install.sh >/dev/null; fi
# Where install.sh put them: $KIST_PEERS, as for the tests, if set.
export KIST_PEERS=${KIST_PEERS:-$PWD/target/peers}
export PATH="$KIST_PEERS/bin:$PATH"

peers=()
if [[ $(id -u) == 0 ]]; then
    missing=()
    for program in containerd docker-registry skopeo; do
        command -v "$program" >/dev/null || missing+=("$program")
    done
    if ((${#missing[@]})); then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    ctrdir=$(mktemp -d /var/tmp/kist-bench-containerd.XXXXXX)
    cat > "$ctrdir/config.toml" <<TOML
version = 2
root = "$ctrdir/root"
state = "$ctrdir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctrdir/containerd.sock"
[plugins."io.containerd.gc.v1.scheduler"]
  mutation_threshold = 0
  deletion_threshold = 0
  pause_threshold = 0.0
TOML
    containerd --config "$ctrdir/config.toml" >"$ctrdir/containerd.log" 2>&1 &
    ctrpid=$!
    trap 'kill "$ctrpid" 2>/dev/null; wait "$ctrpid" 2>/dev/null; rm -rf "$ctrdir"' EXIT
    for _ in $(seq 100); do
        ctr -a "$ctrdir/containerd.sock" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    ctr -a "$ctrdir/containerd.sock" version >/dev/null || { cat "$ctrdir/containerd.log"; echo "containerd did not start" >&2; exit 1; }
    peers=(--ctr-socket "$ctrdir/containerd.sock")
else
    echo "not root: running without containerd (its rows will be missing)" >&2
fi

{
    echo "# kist benchmark results"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
    echo "- filesystem: $(df -T /var/tmp | awk 'NR==2 {print $2}') (/var/tmp)"
    echo "- command: \`bench/run.sh ${quick[*]}\`"
    echo "- kist $(git rev-parse --short HEAD), containerd $(containerd --version 2>/dev/null | awk '{print $3}' || echo 'not run')"
    echo
    echo "Contenders run interleaved (one repetition of each in turn); times are wall clock;"
    echo "\"speed vs\" is the baseline's median time over the contender's (above 1 is faster)."
    target/release/kist-bench "${quick[@]}" "${peers[@]}"
} > "$out.new"
mv "$out.new" "$out"
echo "wrote $out"
