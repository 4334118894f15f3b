#!/usr/bin/env bash
# Compares this tree with an earlier revision on the same machine in the
# same run: kist-bench of each, alternately, ROUNDS times, then every row
# both have with its median rate over the rounds and the ratio new/old.
# (One kist-bench process cannot load two builds of the library.)
#
#   bench/compare.sh REV ROUNDS [kist-bench args...]
#   bench/compare.sh e33c2a2 5 --only small --only big
#
# REV is built once in target/compare/REV (a git worktree).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/compare.sh REV ROUNDS [kist-bench args...]}
rounds=${2:?usage: bench/compare.sh REV ROUNDS [kist-bench args...]}
shift 2
old=target/compare/$rev
if [[ ! -x $old/target/release/kist-bench ]]; then
    [[ -d $old ]] || git worktree add --detach "$old" "$rev" >&2
    # The kist binary is in `kist-cli` since round 2, in `kist` before.
    (cd "$old" && { cargo build -q --release --locked -p kist-cli -p kist-bench 2>/dev/null ||
        cargo build -q --release --locked -p kist -p kist-bench; }) >&2
fi
cargo build -q --release --locked -p kist-cli -p kist-bench >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    target/release/kist-bench "$@" --reps 1 --out "$out/new-$round.md" >/dev/null
    "$old/target/release/kist-bench" "$@" --reps 1 --kist "$old/target/release/kist" \
        --out "$out/old-$round.md" >/dev/null
done
python3 - "$out" "$rev" <<'PY'
import glob, re, statistics, sys
out, rev = sys.argv[1], sys.argv[2]
def rows(path):
    section, found = None, {}
    for line in open(path):
        if line.startswith("### "):
            section = line[4:].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section and len(cells) >= 5 and re.match(r"^[0-9.]+$", cells[4] or "x"):
            found[(section, cells[0])] = float(cells[4])
    return found
runs = {k: [rows(p) for p in sorted(glob.glob(f"{out}/{k}-*.md"))] for k in ("new", "old")}
keys = [k for k in runs["new"][0] if all(k in r for r in runs["old"])]
print(f"| scenario | contender | this tree (median) | {rev} (median) | ratio |")
print("|---|---|---|---|---|")
for key in keys:
    new = statistics.median(r[key] for r in runs["new"])
    old = statistics.median(r[key] for r in runs["old"])
    print(f"| {key[0]} | {key[1]} | {new:.0f} | {old:.0f} | {new / old:.2f}× |")
PY
