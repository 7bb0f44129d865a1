#!/usr/bin/env bash
# scripts/fuzz.sh (make fuzz): every cargo-fuzz target of fuzz/ for FUZZ_SECONDS (600) each,
# two at a time (one per core). Each starts from its corpus in fuzz/corpus/<target> (kept in
# git, minimised at the end with cargo fuzz cmin, so it holds what the runs learned). A crash
# stops that target with its input in fuzz/artifacts/<target>/ and makes the run fail: fix
# it, and make the input a regression test.
#
#   datagram       wire::parse, and what parses is encoded back the same
#   env_file       .env text, then the configuration of both roles
#   request_head   the HTTP head's limits, in one read or two, and its parsing
#   registration   a registration body, then the index it fills
#
# Needs the nightly toolchain (on this machine kind) and cargo-fuzz (installed when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_EACH=${FUZZ_SECONDS:-600}
LOGS=fuzz/logs
say() { printf '[fuzz %4ds] %s\n' "$SECONDS" "$*" >&2; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
say "building the targets (nightly, address sanitizer)"
cargo +nightly fuzz build
mapfile -t targets < <(cargo +nightly fuzz list)
mkdir -p "$LOGS"

run() { # target
    local target=$1
    mkdir -p "fuzz/corpus/$target"
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$LOGS/$target.log" 2>&1; then
        say "$target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$LOGS/$target.log" | tail -1)s, no crash"
    else
        say "$target: FAILED; see $LOGS/$target.log and fuzz/artifacts/$target/"
        return 1
    fi
}

failed=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    say "running ${targets[*]:i:2} for ${SECONDS_EACH}s"
    pids=()
    for target in "${targets[@]:i:2}"; do
        run "$target" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
done
for target in "${targets[@]}"; do
    cargo +nightly fuzz cmin "$target" "fuzz/corpus/$target" >>"$LOGS/$target.log" 2>&1 || true
    say "$target: corpus of $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
done
exit "$failed"
