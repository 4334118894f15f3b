#!/usr/bin/env bash
# Installs the programs kist's tests drive but did not write (foreign
# hosts, clients and daemons) and links each into $KIST_PEERS/bin (default
# target/peers/bin), the one place the tests look for them.
#
#   tests/peers/install.sh        (./test.sh runs it before cargo test)
#
# Idempotent and cached: what is installed and current is left alone, so a
# second run takes about a second. A peer that cannot be installed stops
# the run with one line naming it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
peers=${KIST_PEERS:-$root/target/peers}
mkdir -p "$peers/bin"

fail() { echo "tests/peers/install.sh: $*" >&2; exit 1; }
# Links $2 (an absolute path) into the peers' bin as $1.
link() { rm -f "$peers/bin/$1"; ln -s "$2" "$peers/bin/$1"; }
# Whether stamp $1 records the content of file $2 (an install from it is current).
current() { [[ -f "$peers/$1.stamp" ]] && cmp -s "$peers/$1.stamp" "$2"; }
stamp() { cp "$2" "$peers/$1.stamp"; }

# Debian packages: program -> package. Installed together, only if missing.
declare -A apt_peers=(
    [node]=nodejs
    [npm]=npm
    [skopeo]=skopeo
    [containerd]=containerd
    [ctr]=containerd
    [runc]=runc
    [docker-registry]=docker-registry
    [busybox]=busybox-static
    [zstd]=zstd
    [curl]=curl
    [ostree]=ostree
    [casync]=casync
    [protoc]=protobuf-compiler
    [openssl]=openssl
    [podman]=podman
    [ip]=iproute2
    [tc]=iproute2
)
missing=()
for program in "${!apt_peers[@]}"; do
    command -v "$program" >/dev/null || missing+=("${apt_peers[$program]}")
done
# GNU time (the benchmarks' peak RSS); `command -v time` finds bash's keyword.
[[ -x /usr/bin/time ]] || missing+=(time)
# Sorted and once each (containerd brings two programs).
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}: install them with apt-get (needs root)"
    echo "installing ${missing[*]} from Debian" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        fail "apt-get install ${missing[*]} failed"
fi
for program in "${!apt_peers[@]}"; do
    link "$program" "$(command -v "$program")"
done

# Ceph's RADOS Gateway (S3) for the object-store tests, which start it
# with tests/peers/rgw.sh: without recommends (61 packages instead of 111;
# no ceph-mgr, no dashboard).
ceph=(radosgw ceph-mon ceph-osd)
missing=()
for program in "${ceph[@]}" monmaptool osdmaptool radosgw-admin ceph; do
    command -v "$program" >/dev/null || missing=("${ceph[@]}")
done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}: install them with apt-get (needs root)"
    echo "installing ${missing[*]} from Debian" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
        fail "apt-get install ${missing[*]} failed"
fi
link rgw "$root/tests/peers/rgw.sh"

# Python packages in a private virtual environment.
venv=$peers/venv
if ! current pip tests/peers/requirements.txt || [[ ! -x $venv/bin/python ]]; then
    echo "installing tests/peers/requirements.txt into $venv" >&2
    python3 -m venv "$venv" || fail "python3 -m venv failed (is python3-venv installed?)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/peers/requirements.txt ||
        fail "pip install -r tests/peers/requirements.txt failed"
    stamp pip tests/peers/requirements.txt
fi
# A wrapper, not a link: Python finds its venv from the path it was run as.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/python" >"$peers/bin/python"
chmod +x "$peers/bin/python"
# The wheel's native binary itself, not its Python launcher. pip unpacks
# it without its executable bit.
wasmtime=$("$venv/bin/python" -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))')
chmod +x "$wasmtime"
link wasmtime "$wasmtime"

# npm packages (jco and the preview2 shim) for tests/node.
if ! current npm tests/node/package-lock.json || [[ ! -d tests/node/node_modules ]]; then
    echo "installing tests/node/package-lock.json" >&2
    npm --prefix tests/node ci --no-audit --no-fund --loglevel=error >/dev/null ||
        fail "npm ci in tests/node failed"
    stamp npm tests/node/package-lock.json
fi
link jco "$root/tests/node/node_modules/.bin/jco"

# Every peer must run; a broken one stops here, not in the middle of the tests.
for program in "$peers"/bin/*; do
    [[ -x $program ]] || fail "$(basename "$program") is linked but not executable: $program"
done
"$peers/bin/wasmtime" --version >/dev/null || fail "the wasmtime CLI does not run"
echo "test peers ready in $peers/bin: $(cd "$peers/bin" && echo *)" >&2
