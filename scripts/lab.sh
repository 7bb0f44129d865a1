#!/usr/bin/env bash
# scripts/lab.sh: the seed's three hosts as Linux network namespaces, with its cluster running,
# for people who want a lab by hand (make lab, make lab-down).
#
#   scripts/lab.sh up       build the static binary, make the network, start the seed's cluster
#   scripts/lab.sh status   what runs where
#   scripts/lab.sh down     stop exactly the lab's processes, delete its namespaces and state
#
# The seed's demonstration and the fault drills that once ran here (`test`) are Rust tests now,
# each on a lab of its own: tests/lab.rs (make lab-test).
#
# The network (nothing is created in, or attached to, the machine's own namespace; no packet
# leaves the machine):
#
#   namespace sp-lan:   bridge br0 (multicast snooping off, so multicast floods), ports h1 h2 h3
#   namespace sp-host1: eth0 192.168.35.10/24 <-> h1    supernode1 :5000, supernode2 :5001
#   namespace sp-host2: eth0 192.168.35.11/24 <-> h2    node1 :8000 -> supernode1
#   namespace sp-host3: eth0 192.168.35.12/24 <-> h3    node2 :8000 -> supernode1,
#                                                       node3 :8001 -> supernode2
#
# Each veth pair is created inside sp-lan with its other end moved straight into a host
# namespace. Every host has lo up and a route 224.0.0.0/4 dev eth0 for the supernodes' group
# (230.0.0.0:4321, TTL 1). The cluster runs with GROUP_SIZE=2 and default timings. A failed
# `up` removes whatever it made.
#
# Needs root, iproute2, curl, sha256sum, setsid, flock, cargo (or LAB_BIN=<a built superpeer>).
# Environment: LAB_STATE_DIR (default /tmp/superpeer-lab), LAB_BIN (skip the build and use
# this binary), LAB_LOG_LEVEL (log level of the lab's processes, default info), LAB_KEY=1 (one
# fresh cluster key for every instance: a keyed group).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${LAB_STATE_DIR:-/tmp/superpeer-lab}
LAB_LOG_LEVEL=${LAB_LOG_LEVEL:-info}
LAN_NS=sp-lan
HOSTS=(1 2 3)
# Every namespace this script may create: `down` deletes all of them whatever the state says.
LAB_NAMESPACES=(sp-host1 sp-host2 sp-host3 "$LAN_NS")
MUSL_TARGET=x86_64-unknown-linux-musl
# The lab's own copy of the binary: a rebuild in target/ cannot swap it under running
# processes, and a PID is only ever signalled when it runs this very file.
BIN="$STATE/bin/superpeer"
CURL_MAX_S=8 # hang detector: a few seconds above the search time-out

# The caller's configuration must not leak into the lab's processes, nor a proxy into curl.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# --- small helpers -----------------------------------------------------------------------

die() {
    echo "lab: $*" >&2
    exit 1
}

say() {
    echo "lab: $*"
}

host_ip() {
    echo "192.168.35.$((9 + $1))"
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root: it creates network namespaces (try: sudo $0 ${1:-})"
    command -v ip >/dev/null 2>&1 || die "ip (iproute2) is missing; install it: apt-get install -y iproute2"
}

# curl drives the lab; it is installed when missing.
require_tools() {
    if ! command -v curl >/dev/null 2>&1; then
        say "curl is missing; installing it (apt-get install -y curl)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null ||
            die "could not install curl"
    fi
    local tool
    for tool in sha256sum setsid flock; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
    done
}

# One lab command at a time on this machine (the namespace names are fixed).
take_lock() {
    exec 9>"$STATE.lock"
    flock -n 9 || die "another scripts/lab.sh is running (lock $STATE.lock)"
}

# --- the binary --------------------------------------------------------------------------

# The static binary, copied into the state dir: LAB_BIN when given (make lab passes the one
# `make dist` built), else the same musl build `make dist` makes.
build_binary() {
    local built
    mkdir -p "$STATE/bin"
    if [[ -n ${LAB_BIN:-} ]]; then
        [[ -x $LAB_BIN ]] || die "LAB_BIN=$LAB_BIN is not an executable file"
        built=$LAB_BIN
        say "using LAB_BIN=$built (no build)"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo is missing (or set LAB_BIN to a built superpeer)"
        say "building: cargo build --release --target $MUSL_TARGET"
        if ! (cd "$ROOT" && cargo build --release --target "$MUSL_TARGET") >"$STATE/build.log" 2>&1; then
            tail -n 30 "$STATE/build.log" >&2
            die "cargo build failed (full log above: $STATE/build.log)"
        fi
        built="$ROOT/target/$MUSL_TARGET/release/superpeer"
    fi
    cp "$built" "$BIN.new"
    mv -f "$BIN.new" "$BIN"
    if command -v file >/dev/null 2>&1; then
        say "binary: $(file -b "$BIN" | cut -d, -f1-5)"
    fi
}

# --- the network -------------------------------------------------------------------------

ns_exists() {
    ip netns list 2>/dev/null | awk '{ print $1 }' | grep -xF "$1" >/dev/null
}

# Creates a namespace and records it, so `down` removes it even after a half-failed `up`.
make_ns() {
    echo "$1" >>"$STATE/namespaces"
    ip netns add "$1" || die "ip netns add $1 failed: cannot create network namespaces here"
    ip -n "$1" link set lo up
}

net_up() {
    say "creating namespaces ${LAB_NAMESPACES[*]}"
    make_ns "$LAN_NS"
    ip -n "$LAN_NS" link add br0 type bridge
    # Without snooping the bridge floods multicast to every port: no IGMP querier is needed.
    ip -n "$LAN_NS" link set br0 type bridge mcast_snooping 0
    ip -n "$LAN_NS" link set br0 up
    local h ns
    for h in "${HOSTS[@]}"; do
        ns="sp-host$h"
        make_ns "$ns"
        # Born in sp-lan, its peer moved straight into the host: never in our own namespace.
        ip -n "$LAN_NS" link add "h$h" type veth peer name eth0 netns "$ns"
        ip -n "$LAN_NS" link set "h$h" master br0
        ip -n "$LAN_NS" link set "h$h" up
        ip -n "$ns" addr add "$(host_ip "$h")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add 224.0.0.0/4 dev eth0
    done
}

# --- processes ---------------------------------------------------------------------------

proc_field() { # NAME INDEX: a field of the process's spec (0 host, 1 role, 2 port)
    sed -n "$(($2 + 1))p" "$STATE/procs/$1.spec"
}

proc_ns() {
    echo "sp-host$(proc_field "$1" 0)"
}

proc_loc() {
    echo "$(host_ip "$(proc_field "$1" 0)"):$(proc_field "$1" 2)"
}

proc_url() {
    echo "http://$(proc_loc "$1")"
}

proc_pid() {
    cat "$STATE/procs/$1.pid" 2>/dev/null || true
}

# Running (a zombie does not count).
pid_running() {
    local state
    [[ -n $1 && -r /proc/$1/stat ]] || return 1
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Is PID still one of ours, i.e. running the lab's copy of the binary? Guards against a
# recorded PID that the kernel has since given to somebody else.
pid_is_lab() {
    local exe
    pid_running "$1" || return 1
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [[ $exe == "$BIN" || $exe == "$BIN (deleted)" ]]
}

# start_proc NAME HOST ROLE PORT [KEY=VALUE...]: records how to run an instance, runs it.
start_proc() {
    local name=$1
    mkdir -p "$STATE/procs"
    printf '%s\n' "$2" "$3" "$4" "${@:5}" >"$STATE/procs/$name.spec"
    launch_proc "$name"
}

# (Re)starts a recorded instance in its host namespace, configured by environment only.
launch_proc() {
    local name=$1 spec
    mapfile -t spec <"$STATE/procs/$name.spec"
    local host=${spec[0]} role=${spec[1]} port=${spec[2]}
    local -a extra=("${spec[@]:3}")
    local ns="sp-host$host" ip pidfile="$STATE/procs/$name.pid" log="$STATE/procs/$name.log"
    local -a keyed=()
    [[ -s $STATE/cluster.key ]] && keyed=(CLUSTER_KEY_FILE="$STATE/cluster.key")
    ip=$(host_ip "$host")
    rm -f "$pidfile"
    echo "=== $(date '+%F %T') lab: starting $name ($role) in $ns on $ip:$port" >>"$log"
    # The inner bash writes its own PID, then execs ip, which execs env, which execs the
    # binary: the recorded PID is the superpeer process. setsid: no terminal signals reach it.
    # 9>&-: the instance must not inherit (and keep holding) the lab's lock.
    # shellcheck disable=SC2016 # $$ and $1 belong to the inner bash
    setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' lab-launch "$pidfile" \
        ip netns exec "$ns" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LHOST="$ip" LPORT="$port" LOG_LEVEL="$LAB_LOG_LEVEL" "${keyed[@]}" "${extra[@]}" \
        "$BIN" "$role" </dev/null >>"$log" 2>&1 9>&- &
    disown "$!"
    local deadline=$((SECONDS + 5))
    while [[ ! -s $pidfile ]] && ((SECONDS < deadline)); do
        sleep 0.05
    done
    [[ -s $pidfile ]] || die "$name did not start (no pid file); log: $log"
}

show_log_tail() {
    echo "---- last lines of $STATE/procs/$1.log" >&2
    tail -n 15 "$STATE/procs/$1.log" >&2 || true
    echo "----" >&2
}

# Stops one recorded instance: SIGNAL (TERM by default), then KILL if it lingers.
stop_proc() {
    local name=$1 sig=${2:-TERM} pid
    pid=$(proc_pid "$name")
    if [[ -n $pid ]] && pid_is_lab "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 5))
        while pid_running "$pid" && ((SECONDS < deadline)); do
            sleep 0.05
        done
        if pid_running "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 3))
            while pid_running "$pid" && ((SECONDS < deadline)); do
                sleep 0.05
            done
        fi
    fi
    rm -f "$STATE/procs/$name.pid"
}

lab_proc_names() {
    local spec
    for spec in "$STATE"/procs/*.spec; do
        [[ -e $spec ]] || continue
        basename "$spec" .spec
    done
}

# --- HTTP from inside a host ---------------------------------------------------------------

# http_get NS URL MAX_SECONDS: one GET from inside NS. Sets HTTP_CODE (000 when no answer came
# in time); the body is in $STATE/http/body.
http_get() {
    local ns=$1 url=$2 max=$3
    mkdir -p "$STATE/http"
    HTTP_CODE=$(ip netns exec "$ns" curl -s --noproxy '*' --max-time "$max" \
        -o "$STATE/http/body" -w '%{http_code}' "$url" 2>/dev/null) || true
    [[ $HTTP_CODE =~ ^[0-9]{3}$ ]] || HTTP_CODE=000
}

# body_has TEXT: the last body holds the JSON string "TEXT" (a location, quotes included).
body_has() {
    grep -F "\"$1\"" "$STATE/http/body" >/dev/null 2>&1
}

# alive_has SUPERNODE LOCATION: LOCATION is in the supernode's alive list.
alive_has() {
    http_get "$(proc_ns "$1")" "$(proc_url "$1")/api/supernode/alive" "$CURL_MAX_S"
    [[ $HTTP_CODE == 200 ]] && body_has "$2"
}

# search_finds SUPERNODE ID LOCATION: a search, asked from the supernode's own host, answers
# 200 with LOCATION among the holders.
search_finds() {
    http_get "$(proc_ns "$1")" "$(proc_url "$1")/api/supernode/search/$2" "$CURL_MAX_S"
    [[ $HTTP_CODE == 200 ]] && body_has "$3"
}

# --- readiness (polling with deadlines) ----------------------------------------------------

wait_supernode_ready() {
    local name=$1 deadline=$((SECONDS + ${2:-20})) pid
    while ((SECONDS < deadline)); do
        pid=$(proc_pid "$name")
        if ! pid_running "$pid"; then
            show_log_tail "$name"
            die "$name exited during start-up"
        fi
        http_get "$(proc_ns "$name")" "$(proc_url "$name")/api/supernode/alive" 2
        [[ $HTTP_CODE == 200 ]] && return 0
        sleep 0.1
    done
    show_log_tail "$name"
    die "$name did not answer on $(proc_url "$name") in time"
}

# wait_registered NODE SUPERNODE: the node is in the supernode's alive list.
wait_registered() {
    local node=$1 sn=$2 deadline=$((SECONDS + ${3:-20})) loc
    loc=$(proc_loc "$node")
    while ((SECONDS < deadline)); do
        if ! pid_running "$(proc_pid "$node")"; then
            show_log_tail "$node"
            die "$node exited during start-up"
        fi
        alive_has "$sn" "$loc" && return 0
        sleep 0.1
    done
    show_log_tail "$node"
    die "$node did not register with $sn in time"
}

# wait_group FROM ID LOCATION: FROM finds ID at LOCATION, i.e. the multicast group works.
wait_group() {
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        search_finds "$1" "$2" "$3" && return 0
        sleep 0.2
    done
    show_log_tail "$1"
    die "$1 does not find $2 at $3 through the multicast group"
}

# --- resources ---------------------------------------------------------------------------

# The ids of the files of resources/$1 that no other node holds.
unique_ids() {
    local mine="$ROOT/resources/$1" f id other dir
    for f in "$mine"/*; do
        [[ -f $f ]] || continue
        id=$(sha256sum "$f" | cut -d' ' -f1)
        other=0
        for dir in "$ROOT"/resources/*/; do
            [[ ${dir%/} == "$mine" ]] && continue
            if sha256sum "$dir"* 2>/dev/null | cut -d' ' -f1 | grep -xF "$id" >/dev/null; then
                other=1
            fi
        done
        ((other)) || echo "$id"
    done
}

load_ids() {
    mapfile -t IDS1 < <(unique_ids node1)
    mapfile -t IDS3 < <(unique_ids node3)
    ((${#IDS1[@]} && ${#IDS3[@]})) || die "resources/node1 and node3 need files of their own"
}

# --- cluster layouts -----------------------------------------------------------------------

SN1_API="http://$(host_ip 1):5000/api/supernode"
SN2_API="http://$(host_ip 1):5001/api/supernode"

# The seed's topology, default timings (the liveness of drill 1 must be the default).
start_seed_cluster() {
    start_proc supernode1 1 supernode 5000 MULTICAST_GROUP_SIZE=2
    start_proc supernode2 1 supernode 5001 MULTICAST_GROUP_SIZE=2
    wait_supernode_ready supernode1
    wait_supernode_ready supernode2
    start_proc node1 2 node 8000 SUPERNODE_ENDPOINT="$SN1_API" \
        RESOURCE_PATH="$ROOT/resources/node1" NODE_NAME=node1
    start_proc node2 3 node 8000 SUPERNODE_ENDPOINT="$SN1_API" \
        RESOURCE_PATH="$ROOT/resources/node2" NODE_NAME=node2
    start_proc node3 3 node 8001 SUPERNODE_ENDPOINT="$SN2_API" \
        RESOURCE_PATH="$ROOT/resources/node3" NODE_NAME=node3
    wait_registered node1 supernode1
    wait_registered node2 supernode1
    wait_registered node3 supernode2
    wait_group supernode1 "${IDS3[0]}" "$(proc_loc node3)"
    wait_group supernode2 "${IDS1[0]}" "$(proc_loc node1)"
}

# --- up / down / status --------------------------------------------------------------------

lab_is_up() {
    local ns
    for ns in "${LAB_NAMESPACES[@]}"; do
        ns_exists "$ns" && return 0
    done
    [[ -d $STATE/procs ]]
}

# Stops every recorded process, deletes every namespace of the lab, removes the state dir.
# Safe to run at any point (nothing there: nothing done).
lab_teardown() {
    local name ns pid
    if [[ -d $STATE/procs ]]; then
        for name in $(lab_proc_names); do
            stop_proc "$name" TERM
        done
    fi
    local -a namespaces=("${LAB_NAMESPACES[@]}")
    if [[ -f $STATE/namespaces ]]; then
        mapfile -t -O "${#namespaces[@]}" namespaces <"$STATE/namespaces"
    fi
    for ns in $(printf '%s\n' "${namespaces[@]}" | sort -u); do
        ns_exists "$ns" || continue
        # Only this script puts processes in its namespaces: one still there is a lab
        # instance whose pid file was lost. Named by PID, never by process name.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            if pid_is_lab "$pid"; then
                say "stopping leftover lab process $pid in $ns"
                kill -KILL "$pid" 2>/dev/null || true
            else
                say "warning: process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) is still in $ns; left alone" >&2
            fi
        done
        ip netns del "$ns" || say "warning: could not delete namespace $ns" >&2
    done
    rm -rf "$STATE"
}

print_reach() {
    local id3=${IDS3[0]}
    cat <<EOF
lab: up. What runs where (state, logs and pid files in $STATE/procs/):
  host-1  sp-host1  $(host_ip 1)   supernode1 :5000, supernode2 :5001 (GROUP_SIZE=2)
  host-2  sp-host2  $(host_ip 2)   node1 :8000 -> supernode1
  host-3  sp-host3  $(host_ip 3)   node2 :8000 -> supernode1, node3 :8001 -> supernode2
Reach them from inside their network, e.g.:
  ip netns exec sp-host2 curl -s http://$(host_ip 2):8000/api/node/resources
  ip netns exec sp-host3 curl -si http://$(host_ip 3):8000/api/node/resources/$id3
  ip netns exec sp-host2 curl -sL http://$(host_ip 2):8000/api/node/resources/$id3/content
  ip netns exec sp-host1 curl -s http://$(host_ip 1):5000/api/supernode/alive
  ip netns exec sp-host1 curl -s http://$(host_ip 1):5000/api/supernode/search/$id3
  ip netns exec sp-host3 bash          # a shell on host-3
Status: scripts/lab.sh status    Stop: scripts/lab.sh down
EOF
}

# Network and the seed's cluster; the caller owns clean-up on failure.
lab_up() {
    mkdir -p "$STATE"
    if [[ ${LAB_KEY:-0} == 1 ]]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$STATE/cluster.key")
        say "a fresh cluster key for every instance ($STATE/cluster.key): requests and datagrams signed"
    fi
    load_ids
    build_binary
    net_up
    say "starting the seed's cluster"
    start_seed_cluster
}

cmd_up() {
    require_root up
    require_tools
    take_lock
    if lab_is_up; then
        if seed_cluster_running; then
            say "a lab is already up (scripts/lab.sh status); nothing to do"
            exit 0
        fi
        die "a lab is partly up; run scripts/lab.sh down first"
    fi
    # A failed start-up leaves nothing behind.
    trap 'rc=$?; if ((rc)); then say "up failed; cleaning up" >&2; lab_teardown; rm -f "$STATE.lock"; fi' EXIT
    trap 'exit 130' INT TERM
    lab_up
    trap - EXIT INT TERM
    print_reach
}

cmd_down() {
    require_root down
    take_lock
    if ! lab_is_up; then
        say "no lab is up; nothing to do"
        rm -f "$STATE.lock"
        return 0
    fi
    lab_teardown
    rm -f "$STATE.lock"
    say "down: processes stopped, namespaces deleted, $STATE removed"
}

# True when every instance of the seed's cluster (what `up` starts) runs.
seed_cluster_running() {
    local name
    for name in supernode1 supernode2 node1 node2 node3; do
        [[ -f $STATE/procs/$name.spec ]] || return 1
        pid_is_lab "$(proc_pid "$name")" || return 1
    done
}

cmd_status() {
    require_root status
    local ns name pid state
    if ! lab_is_up; then
        say "no lab is up"
        return 0
    fi
    echo "namespaces:"
    for ns in "${LAB_NAMESPACES[@]}"; do
        if ns_exists "$ns"; then
            if [[ $ns == "$LAN_NS" ]]; then
                echo "  $ns: bridge br0, ports $(ip -n "$ns" -br link show master br0 2>/dev/null | awk '{ split($1, a, "@"); printf "%s(%s) ", a[1], $2 }')"
            else
                echo "  $ns: $(ip -n "$ns" -br addr show eth0 2>/dev/null | awk '{ print $1, $2, $3 }')"
            fi
        else
            echo "  $ns: missing"
        fi
    done
    echo "processes:"
    for name in $(lab_proc_names); do
        pid=$(proc_pid "$name")
        if pid_is_lab "$pid"; then state="running, pid $pid"; else state="NOT running"; fi
        printf '  %-11s %-9s %-9s http://%-20s %s\n' "$name" "$(proc_field "$name" 1)" \
            "$(proc_ns "$name")" "$(proc_loc "$name")" "$state"
    done
    echo "logs: $STATE/procs/<name>.log"
}

usage() {
    cat >&2 <<EOF
usage: scripts/lab.sh up|status|down
  up      build, make the namespaces, start the seed's cluster, leave it running
  status  what runs where
  down    stop the lab's processes, delete its namespaces and state dir ($STATE)
The demonstration and the fault drills: make lab-test (tests/lab.rs).
EOF
    exit 2
}

main() {
    [[ $# -eq 1 ]] || usage
    case $1 in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        test) die "the demonstration and the fault drills are Rust tests now (tests/lab.rs): make lab-test" ;;
        *) usage ;;
    esac
}

main "$@"
