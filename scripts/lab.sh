#!/usr/bin/env bash
# scripts/lab.sh: the seed's three hosts as Linux network namespaces, with its cluster running,
# for people who want a lab by hand (make lab, make lab-down).
#
#   scripts/lab.sh up       build the static binary, make the network, start the seed's cluster
#   scripts/lab.sh status   what runs where
#   scripts/lab.sh down     stop exactly the lab's processes, delete its namespaces and state
#
# The work is the bench tool's `sp-bench lab` (bench/tools/src/lab.rs: the network, addresses,
# state files, environment), on the namespace-LAN builder the tests use too (tools/lan). This
# builds the tool (the debug build: it waits on instances, so nothing in it needs to be fast,
# and the tests have built most of it already) and hands over. The seed's demonstration and the
# fault drills are Rust tests, each on a lab of its own: make lab-test (tests/lab.rs).
#
# Needs root, iproute2, cargo. Environment: LAB_STATE_DIR (default /tmp/superpeer-lab), LAB_BIN
# (use this binary instead of building the static one), LAB_LOG_LEVEL (default info), LAB_KEY=1
# (one fresh cluster key for every instance: a keyed group).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Said before building, as the tool says it too (a user who may not make namespaces may not
# be able to write target/ either).
if [[ $(id -u) -ne 0 && ${1:-} =~ ^(up|status|down)$ ]]; then
    echo "lab: must run as root: it creates network namespaces (try: sudo $0 $1)" >&2
    exit 1
fi
command -v cargo >/dev/null 2>&1 || { echo 'lab: cargo is missing: it builds the lab tool' >&2; exit 1; }
[[ -x target/debug/sp-bench ]] || echo 'lab: building the lab tool (cargo build -p superpeer-bench-tools)'
cargo build --quiet -p superpeer-bench-tools --bin sp-bench ||
    { echo 'lab: cannot build the lab tool (cargo build -p superpeer-bench-tools)' >&2; exit 1; }
exec target/debug/sp-bench lab "$@"
