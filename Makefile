# superpeer: build, run, test and package.  `make` (or `make help`) lists the targets.
#
#   make r-super IP=<bind ip> PORT=<port> CONFIG=<name or path> GROUP_SIZE=<n>
#   make r-node  IP=<bind ip> PORT=<port> CONFIG=<name or path>
#
# IP, PORT and GROUP_SIZE are passed to the instance (as LHOST, LPORT and
# MULTICAST_GROUP_SIZE) only when given on make's command line; otherwise the value
# in the .env file is used. CONFIG=node1 reads config/node1.env; a value with '/' or
# ending in .env is a path, relative to the project root unless absolute.

# The project root is where this Makefile lives, so `make -C` and `make -f` work
# from anywhere: every recipe runs from there.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

CARGO ?= cargo
BIN := target/release/superpeer
# The target `make dist` builds for: a static musl binary.
DIST_TARGET ?= x86_64-unknown-linux-musl

# $(call given,VAR): the value of VAR when it was set on make's command line, else
# empty. Variables such as PORT that merely happen to be in the environment are
# ignored (set LHOST, LPORT, ... in the environment to override the .env file).
given = $(if $(filter command line override,$(origin $1)),$(strip $($1)))
# $(call env_if,KEY,VAR): `KEY='value' ` when VAR was given, else nothing.
env_if = $(if $(call given,$2),$1='$(call given,$2)' )

.DEFAULT_GOAL := help
.PHONY: help build r-super r-node test test-tools fmt fmt-fix lint demo dist dist-target lab lab-down lab-test bench attack fuzz clean

# List the targets and how to start an instance.
help:
	@echo 'superpeer: a peer-to-peer resource-location network'
	@echo
	@echo 'Targets:'
	@echo '  help      this text (the default)'
	@echo '  build     cargo build --release  ->  $(BIN)'
	@echo '  r-super   run a supernode (default CONFIG=supernode1)'
	@echo '  r-node    run a node (default CONFIG=node1)'
	@echo '  test      cargo test (and the LAN builder'"'"'s unit tests: tools/lan)'
	@echo '  test-tools  the tests that need Debian tools: promtool, chromium, aria2c (installs'
	@echo '            them; root)'
	@echo '  fmt       check formatting (cargo fmt --check); fmt-fix rewrites the files'
	@echo '  lint      cargo clippy --all-targets -- -D warnings'
	@echo '  demo      start a 2-supernode, 3-node cluster on 127.0.0.1 and walk through'
	@echo '            the API (DEMO_EXIT=1 make demo: stop when the walk-through ends)'
	@echo '  dist      static musl release binary in dist/superpeer'
	@echo '  lab       the seed'"'"'s 3 hosts as network namespaces (root); lab-down stops it'
	@echo '  lab-test  the demonstration across the lab'"'"'s hosts and the fault drills (root;'
	@echo '            tests/lab.rs, open and keyed; LAB_KEY=1: keyed only)'
	@echo '  vms       the seed'"'"'s 3 hosts as Debian 12 VMs (qemu, root), provisioned by'
	@echo '            machine/provision.sh and left running; vms-down stops them'
	@echo '  vm-test   the demonstration and the systemd checks across those VMs (root;'
	@echo '            boots them, tests, stops them: machine/vms.sh)'
	@echo '  bench     every benchmark, with references measured in the same run'
	@echo '            (BENCH_ONLY="2 2k" make bench: those rows only)'
	@echo '  attack    slowhttptest'"'"'s four slow-HTTP attacks on a supernode, a node and nginx, and the'
	@echo '            datagram attacks on the open mode (root; bench/attack.md)'
	@echo '  fuzz      the fuzz targets (cargo fuzz, nightly), FUZZ_SECONDS each (600)'
	@echo '  clean     remove target/ and dist/'
	@echo
	@echo 'Usage:'
	@echo '  make r-super IP=<bind ip> PORT=<port> CONFIG=<name or path> GROUP_SIZE=<n>'
	@echo '  make r-node  IP=<bind ip> PORT=<port> CONFIG=<name or path>'
	@echo
	@echo '  IP, PORT and GROUP_SIZE override LHOST, LPORT and MULTICAST_GROUP_SIZE of the'
	@echo '  .env file; left out, the file (or the environment) decides. CONFIG=node1 reads'
	@echo '  config/node1.env; a value with / or ending in .env is a path from the project root.'
	@echo
	@echo 'Example (the demo cluster, each in its own terminal):'
	@echo '  make r-super CONFIG=supernode1     make r-super CONFIG=supernode2'
	@echo '  make r-node CONFIG=node1           make r-node CONFIG=node2'
	@echo '  make r-node CONFIG=node3'

# Build the optimised binary.
build:
	cd '$(ROOT)' && $(CARGO) build --release

# Run a supernode in the foreground (Ctrl-C stops it).
r-super:
	@cd '$(ROOT)' && $(CARGO) build --release --quiet
	cd '$(ROOT)' && $(call env_if,LHOST,IP)$(call env_if,LPORT,PORT)$(call env_if,MULTICAST_GROUP_SIZE,GROUP_SIZE)exec $(BIN) supernode --config '$(or $(call given,CONFIG),supernode1)'

# Run a node in the foreground (Ctrl-C stops it).
r-node:
	@cd '$(ROOT)' && $(CARGO) build --release --quiet
	cd '$(ROOT)' && $(call env_if,LHOST,IP)$(call env_if,LPORT,PORT)exec $(BIN) node --config '$(or $(call given,CONFIG),node1)'

# Run the unit and integration tests, and the unit tests of the namespace-LAN builder
# (tools/lan: the tests' LANs, make lab's and make attack's; its root-only tests are CI's).
test:
	cd '$(ROOT)' && $(CARGO) test
	cd '$(ROOT)' && $(CARGO) test -p superpeer-lan

# The tests that need tools from Debian packages, installed first: promtool (prometheus) on
# both roles' metrics; the pages in chromium, headless, driven by chromedriver (as root: the
# browser runs in a network namespace with nothing but loopback); aria2c with a Metalink document.
TOOL_PACKAGES = prometheus:promtool chromium:chromium chromium-driver:chromedriver aria2:aria2c
test-tools:
	cd '$(ROOT)' && missing=; for p in $(TOOL_PACKAGES); do \
	  command -v "$${p#*:}" >/dev/null || missing="$$missing $${p%%:*}"; done; \
	  if [ -n "$$missing" ]; then bash scripts/apt-install.sh $$missing; fi
	cd '$(ROOT)' && $(CARGO) test --test tests -- --ignored metrics:: browser:: swarm::

# Check the formatting without changing anything (the workspace, so the bench tool and the LAN
# builder too, and the fuzz targets).
fmt:
	cd '$(ROOT)' && $(CARGO) fmt --all -- --check
	cd '$(ROOT)' && $(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

# Format the code in place.
fmt-fix:
	cd '$(ROOT)' && $(CARGO) fmt --all
	cd '$(ROOT)' && $(CARGO) fmt --manifest-path fuzz/Cargo.toml

# Lint everything, warnings included (the bench tool and the LAN builder too: the workspace).
lint:
	cd '$(ROOT)' && $(CARGO) clippy --workspace --all-targets -- -D warnings

# Start the demo cluster and walk through the API (needs curl and python3).
demo:
	@command -v curl >/dev/null 2>&1 || { echo 'make demo: curl is missing; install it (e.g. apt-get install -y curl)' >&2; exit 1; }
	@command -v python3 >/dev/null 2>&1 || { echo 'make demo: python3 is missing; install it (e.g. apt-get install -y python3)' >&2; exit 1; }
	cd '$(ROOT)' && bash scripts/demo.sh

# Static, stripped musl binary in dist/superpeer: runs on any x86_64 Linux, no libc needed.
dist: dist-target
	cd '$(ROOT)' && $(CARGO) build --release --target $(DIST_TARGET)
	@cd '$(ROOT)' && mkdir -p dist && cp target/$(DIST_TARGET)/release/superpeer dist/superpeer
	@cd '$(ROOT)' && echo "dist/superpeer: $$(wc -c < dist/superpeer) bytes" && \
	  { ! command -v file >/dev/null 2>&1 || file dist/superpeer; }

# The musl target is not on a fresh machine: add it once, or say why it cannot be.
dist-target:
	@if command -v rustup >/dev/null 2>&1; then \
	  rustup target list --installed | grep -qx '$(DIST_TARGET)' || { \
	    echo 'make dist: adding the Rust target $(DIST_TARGET) (rustup target add)'; \
	    rustup target add '$(DIST_TARGET)' || { \
	      echo 'make dist: cannot add $(DIST_TARGET); run `rustup target add $(DIST_TARGET)` where the Rust registry is reachable' >&2; exit 1; }; }; \
	else \
	  rustc --print target-libdir --target '$(DIST_TARGET)' >/dev/null 2>&1 && \
	    test -d "$$(rustc --print target-libdir --target '$(DIST_TARGET)')" || { \
	    echo 'make dist: the Rust target $(DIST_TARGET) is missing and there is no rustup to add it; install the Rust standard library for $(DIST_TARGET)' >&2; exit 1; }; \
	fi

# The seed's three hosts as network namespaces on this machine (root; nothing leaves it):
# scripts/lab.sh builds the bench tool and runs `sp-bench lab up` (bench/tools/src/lab.rs), on
# the namespace-LAN builder the tests use too (tools/lan).
lab: dist
	cd '$(ROOT)' && LAB_BIN='$(ROOT)/dist/superpeer' bash scripts/lab.sh up

# Stop the lab: every process and namespace it made.
lab-down:
	cd '$(ROOT)' && bash scripts/lab.sh down

# The lab drills (tests/lab.rs, as root; each on a LAN of network namespaces of its own): the
# seed's demonstration across three hosts and the five fault drills, each in an open lab and a
# keyed one, then the attacker host and the graceful stop. One line per result (PASS, FAIL or
# SKIP); the instances' logs are shown for a failed test only. LAB_KEY=1: the keyed runs only.
# One test at a time: the drills measure times, and the machine has few cores.
lab-test:
	@[ "$$(id -u)" = 0 ] || { echo 'make lab-test: must run as root: the drills make network namespaces (try: sudo make lab-test)' >&2; exit 1; }
	@command -v ip >/dev/null 2>&1 || { echo 'make lab-test: ip (iproute2) is missing; install it: apt-get install -y iproute2' >&2; exit 1; }
	cd '$(ROOT)' && $(CARGO) test --test tests -- --ignored --test-threads=1 $(if $(filter 1,$(LAB_KEY)),lab::keyed::,lab::)

# The seed's three hosts as real Debian 12 VMs (qemu, software emulation; root): the image is
# debootstrapped once into target/vm/, each VM provisioned by machine/provision.sh, its NIC a
# tap on a bridge in a network namespace of its own (no packet leaves the machine).
.PHONY: vms vms-down vm-test
vms: dist
	cd '$(ROOT)' && bash machine/vms.sh up

# Stop the VMs: every qemu, tap, bridge and namespace `make vms` made.
vms-down:
	cd '$(ROOT)' && bash machine/vms.sh down

# Boot the VMs, run the seed's demonstration and the systemd checks across them, stop them
# (PASS/FAIL lines with measured times).
vm-test: dist
	cd '$(ROOT)' && bash machine/vms.sh test

# Every benchmark, against references measured in the same run: bench/results.md. run.sh installs
# the tools and hands over to the bench tool's driver (sp-bench run); BENCH_ONLY="2 2k" runs some
# rows only (bench/README.md).
bench:
	cd '$(ROOT)' && bash bench/run.sh

# slowhttptest's four attacks against a supernode, a node and nginx, then the datagram
# attacks on the open mode (tests/lab/open_mode.rs), in namespaces (root; `sp-bench lan`):
# bench/attack.md. ATTACK_CONNECTIONS (1000) and ATTACK_SECONDS (30) shorten it.
attack:
	cd '$(ROOT)' && bash scripts/attack.sh

# Every fuzz target for FUZZ_SECONDS (600) each; the corpus is kept in fuzz/corpus.
fuzz:
	cd '$(ROOT)' && bash scripts/fuzz.sh

# Remove the build output.
clean:
	cd '$(ROOT)' && $(CARGO) clean
	rm -rf '$(ROOT)/dist'
