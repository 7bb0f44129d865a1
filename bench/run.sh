#!/usr/bin/env bash
# bench/run.sh (make bench): installs what the measurements need (wrk, nginx, openssl, curl, ss,
# tc and aria2c through apt-get; the musl Rust target through rustup), builds the bench tool and
# hands over to it. `sp-bench run` (bench/tools) builds superpeer, starts everything on 127.0.0.1, runs the
# measurements, writes bench/results.md and stops every process it started: bench/README.md.
#
# Arguments and environment go to `sp-bench run`: BENCH_ONLY="2 2k" (or --only "2 2k"),
# BENCH_WRK_SECONDS (5), BENCH_RUNS (3), BENCH_BUDGET_SECONDS (720), BENCH_STRICT=1,
# BENCH_KEEP_DATA=0; `bash bench/run.sh --help` lists them, `--list` the measurements.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
SETUP=$ROOT/bench/logs/setup
MUSL_TARGET=x86_64-unknown-linux-musl

say() {
    printf '[bench] %s\n' "$*" >&2
}

rm -rf "$SETUP"
mkdir -p "$SETUP"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
{ command -v ss && command -v tc; } >/dev/null 2>&1 || missing+=(iproute2)
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    bash scripts/apt-install.sh "${missing[@]}" >"$SETUP/apt.log" 2>&1 ||
        say "installing ${missing[*]} failed (see $SETUP/apt.log)"
fi

# make dist's target, for the static binary (without it the driver builds a static glibc one).
if command -v rustup >/dev/null 2>&1 &&
    ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
    say "adding the Rust target $MUSL_TARGET (rustup target add)"
    rustup target add "$MUSL_TARGET" >"$SETUP/rustup.log" 2>&1 ||
        say "cannot add $MUSL_TARGET (see $SETUP/rustup.log)"
fi

say "building the bench tool (cargo build --release -p superpeer-bench-tools)"
cargo build --release --quiet -p superpeer-bench-tools || {
    say "the bench tool did not build"
    exit 1
}
exec "$ROOT/target/release/sp-bench" run --root "$ROOT" "$@"
