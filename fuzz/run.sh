#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, starting from the
# committed seed corpus, and prints each target's executions.
#   fuzz/run.sh [SECONDS]
# New inputs go to a scratch corpus (the committed seeds stay as they are);
# a crash leaves its input under fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# `-s none`: libFuzzer coverage without AddressSanitizer, which needs a
# nightly compiler; the code under test has no `unsafe` of its own.
cargo fuzz build -s none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    # TMPDIR: the wit_calls target's store lands in the scratch dir too.
    if ! TMPDIR="$scratch" cargo fuzz run -s none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed; its input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    corpus="$(ls "$scratch/$target" | wc -l)"
    echo "$target: $execs executions in ${seconds}s, $corpus new corpus entries"
done
