#!/usr/bin/env bash
# scripts/lab.sh: a three-host superpeer lab in Linux network namespaces, and fault drills on it.
#
#   scripts/lab.sh up       build the static binary, make the network, start the seed's cluster
#   scripts/lab.sh status   what runs where
#   scripts/lab.sh down     stop exactly the lab's processes, delete its namespaces and state
#   scripts/lab.sh test     a fresh lab, the seed's demonstration across hosts, five fault drills;
#                           ends with "N passed, M failed"; exit status 1 when anything failed
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
# (230.0.0.0:4321, TTL 1). `up` runs that seed topology with GROUP_SIZE=2 and default timings.
#
# `test` runs, on a fresh lab:
#   demo     node2 (host-3) asks for a node3 file: 302 to 192.168.35.12:8001; node1 (host-2)
#            finds a file registered at supernode2 through supernode1's multicast search and
#            downloads it with curl -L.
#   drill 1  (seed topology, default liveness: 5 s period, 2 misses) kill node3: time until it
#            leaves supernode2's alive list and supernode1's searches; start it again: time
#            until it is found again.
#   then the lab restarts with a third supernode, supernode3 on host-3 (192.168.35.12:5002),
#   GROUP_SIZE=3 everywhere, and short timings (liveness every 2 s, 2 misses, health time-out
#   1 s; node heartbeat 1 s). node1 (host-2) and node2 (host-3) register with supernode1; node3
#   (host-3) keeps the seed's supernode2 (host-1), so drill 3 can restart its supernode and
#   drill 2's partition separates node3 from its supernode. supernode3 indexes nobody: it is
#   the group member that goes silent when host-3 is cut off.
#   drill 2  host-3's cable is pulled at the switch (bridge port h3 down; host-3 keeps its own
#            address): every search at supernode1 ends within the search time-out, node2
#            leaves supernode1's index after two missed checks; cable back in: everything is
#            found again, nothing restarted.
#   drill 3  kill supernode2, start it again: node3 registers again by itself (heartbeat 404),
#            its files are found again.
#   drill 4  nftables in sp-host1 drops 20% of host-1's outgoing multicast datagrams; 100
#            searches at supernode1 for a file only supernode2 knows: at least 99 succeed.
#   drill 5  an extra supernode4 on host-2 (192.168.35.11:5003) believes GROUP_SIZE=5 in this
#            4-supernode lab: its negative searches still end within the time-out.
# A trap stops every process and deletes every namespace on exit, error or Ctrl-C. The logs of
# a test with a failure are kept in /tmp/superpeer-lab-failed-logs/.
# A busy machine sometimes runs nothing for seconds: a watcher (a sleep loop) measures those
# stalls, every upper time bound grows by the stall inside its window, and the output says so.
#
# Needs root, iproute2, curl, python3, sha256sum, cargo (or LAB_BIN=<a built superpeer>);
# drill 4 needs nft (installed with apt-get when missing; iptables as a fall-back).
# Environment: LAB_STATE_DIR (default /tmp/superpeer-lab), LAB_BIN (skip the build and use
# this binary), LAB_LOG_LEVEL (log level of the lab's processes, default info), LAB_KEY=1 (one
# fresh cluster key for every instance: the same demonstration and drills in a keyed group).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${LAB_STATE_DIR:-/tmp/superpeer-lab}
FAILED_LOGS=/tmp/superpeer-lab-failed-logs
LAB_LOG_LEVEL=${LAB_LOG_LEVEL:-info}
LAN_NS=sp-lan
HOSTS=(1 2 3)
# Every namespace this script may create: `down` deletes all of them whatever the state says.
LAB_NAMESPACES=(sp-host1 sp-host2 sp-host3 "$LAN_NS")
MUSL_TARGET=x86_64-unknown-linux-musl
# The lab's own copy of the binary: a rebuild in target/ cannot swap it under running
# processes, and a PID is only ever signalled when it runs this very file.
BIN="$STATE/bin/superpeer"

# Timings the drills check against (milliseconds, as the programs take them).
SEARCH_TIMEOUT_MS=2000
SEARCH_MARGIN_S=0.5            # a search must end within the time-out plus this
CURL_MAX_S=8                   # hang detector: a few seconds above the search time-out
FAST_LIVENESS_MS=2000          # drills 2-5 (drill 1 keeps the default 5000)
FAST_HEALTH_TIMEOUT_MS=1000
FAST_HEARTBEAT_MS=1000
LIVENESS_MISSES=2

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

now() {
    date +%s.%N
}

# Seconds since the time stamp $1, two decimals.
since() {
    awk -v t0="$1" -v t1="$(now)" 'BEGIN { printf "%.2f", t1 - t0 }'
}

# True when $1 <= $2 (decimal numbers).
num_le() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'
}

ms_to_s() {
    awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'
}

# The machine itself sometimes stops running anything for seconds (a busy or paused virtual
# machine: a plain sleep loop sees it too). A watcher records those stalls, so that a drill
# does not blame the program for time during which nothing ran: every upper time bound grows
# by the stall time measured inside its window, and the output says so.
STALL_PY='
import sys, time
out, limit, step = sys.argv[1], float(sys.argv[2]), 0.05
end = time.monotonic() + limit
prev_m, prev_w = time.monotonic(), time.time()
with open(out, "a") as f:
    while prev_m < end:
        time.sleep(step)
        m, w = time.monotonic(), time.time()
        if m - prev_m > step + 0.25:
            f.write("%.3f %.3f\n" % (prev_w + step, w))
            f.flush()
        prev_m, prev_w = m, w
'

start_stall_watch() {
    : >"$STATE/stalls"
    # Bounded: it ends by itself after 15 minutes, and the teardown stops it by its PID.
    python3 -c "$STALL_PY" "$STATE/stalls" 900 </dev/null >/dev/null 2>&1 9>&- &
    echo "$!" >"$STATE/stallwatch.pid"
    disown "$!"
}

stop_stall_watch() {
    local pid
    pid=$(cat "$STATE/stallwatch.pid" 2>/dev/null) || return 0
    # Only if that PID still is the watcher (its command line names our stalls file).
    if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F "$STATE/stalls" >/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/stallwatch.pid"
}

# Seconds the machine stood still between the time stamps $1 and $2 (0 without a watcher).
stalled_between() {
    if [[ ! -s $STATE/stalls ]]; then
        echo 0
        return 0
    fi
    awk -v a="$1" -v b="$2" '{ s = ($1 > a) ? $1 : a; e = ($2 < b) ? $2 : b; if (e > s) t += e - s }
        END { printf "%.2f", t }' "$STATE/stalls"
}

# " (machine stalled N s meanwhile)" when the machine stalled noticeably between $1 and $2.
stall_note() {
    local stalled
    stalled=$(stalled_between "$1" "$2")
    if num_le 0.3 "$stalled"; then
        echo " (machine stalled ${stalled}s meanwhile)"
    fi
}

add() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'
}

# Reads the JSON bodies of the API (python3, so no jq is needed).
JSON_PY='
import json, sys
mode, path = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        doc = json.load(f)
except Exception:
    sys.exit(0)
data = doc.get("data") if isinstance(doc, dict) else None
if mode == "alive":
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and "location" in entry:
            print(entry["location"])
elif mode == "search":
    found = (data or {}).get("file") or {} if isinstance(data, dict) else {}
    locations = list(found.get("locations") or [])
    if found.get("location"):
        locations.insert(0, found["location"])
    for location in dict.fromkeys(locations):
        print(location)
elif mode == "info":
    info = (data or {}).get("info") or {} if isinstance(data, dict) else {}
    print(info.get("location", ""))
'

json_read() {
    python3 -c "$JSON_PY" "$1" "$2"
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root: it creates network namespaces (try: sudo $0 ${1:-})"
    command -v ip >/dev/null 2>&1 || die "ip (iproute2) is missing; install it: apt-get install -y iproute2"
}

# curl and python3 drive the lab; curl is installed when missing, as the brief allows.
require_tools() {
    if ! command -v curl >/dev/null 2>&1; then
        say "curl is missing; installing it (apt-get install -y curl)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null ||
            die "could not install curl"
    fi
    local tool
    for tool in python3 sha256sum setsid flock; do
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

stop_all_procs() {
    local name
    for name in $(lab_proc_names); do
        stop_proc "$name" TERM
    done
}

# --- HTTP from inside a host ---------------------------------------------------------------

# http_get NS URL MAX_SECONDS [TAG]: one GET from inside NS. Sets HTTP_CODE (000 when no
# answer came in time) and HTTP_TIME; body and headers in $STATE/http/TAG.{body,hdr}.
http_get() {
    local ns=$1 url=$2 max=$3 tag=${4:-main} out
    local body="$STATE/http/$tag.body" hdr="$STATE/http/$tag.hdr"
    mkdir -p "$STATE/http"
    rm -f "$body" "$hdr"
    out=$(ip netns exec "$ns" curl -s --noproxy '*' --max-time "$max" -o "$body" -D "$hdr" \
        -w '%{http_code} %{time_total}' "$url" 2>/dev/null) || true
    if [[ $out =~ ^([0-9]{3})\ ([0-9.]+)$ ]]; then
        HTTP_CODE=${BASH_REMATCH[1]}
        HTTP_TIME=${BASH_REMATCH[2]}
    else
        HTTP_CODE=000
        HTTP_TIME=$max
    fi
    HTTP_TIME=$(awk -v t="$HTTP_TIME" 'BEGIN { printf "%.3f", t }')
    HTTP_END=$(now)
}

http_body() {
    echo "$STATE/http/${1:-main}.body"
}

# alive_has SUPERNODE LOCATION [TAG]: LOCATION is in the supernode's alive list.
alive_has() {
    local tag=${3:-main}
    http_get "$(proc_ns "$1")" "$(proc_url "$1")/api/supernode/alive" "$CURL_MAX_S" "$tag"
    # grep reads everything (no -q): an early exit would break the pipe under pipefail.
    [[ $HTTP_CODE == 200 ]] && json_read alive "$(http_body "$tag")" | grep -xF "$2" >/dev/null
}

# search_at SUPERNODE ID [TAG]: a search, asked from the supernode's own host. Sets
# SEARCH_LOCS (newline-separated locations; empty unless 200) besides HTTP_CODE/HTTP_TIME.
search_at() {
    local tag=${3:-main}
    http_get "$(proc_ns "$1")" "$(proc_url "$1")/api/supernode/search/$2" "$CURL_MAX_S" "$tag"
    SEARCH_LOCS=""
    if [[ $HTTP_CODE == 200 ]]; then
        SEARCH_LOCS=$(json_read search "$(http_body "$tag")")
    fi
}

# search_finds SUPERNODE ID LOCATION [TAG]: the search answers 200 with LOCATION among them.
search_finds() {
    search_at "$1" "$2" "${4:-main}"
    [[ $HTTP_CODE == 200 ]] && grep -qxF "$3" <<<"$SEARCH_LOCS"
}

# A search "ended in time": an answer (200 or 404) within the time-out plus the margin (plus
# any time the machine stood still meanwhile, reported in SEARCH_STALL).
search_in_time() {
    local start limit
    start=$(awk -v e="$HTTP_END" -v t="$HTTP_TIME" 'BEGIN { printf "%.3f", e - t }')
    SEARCH_STALL=$(stalled_between "$start" "$HTTP_END")
    limit=$(awk -v t="$SEARCH_TIMEOUT_MS" -v m="$SEARCH_MARGIN_S" -v s="$SEARCH_STALL" 'BEGIN { print t / 1000 + m + s }')
    [[ $HTTP_CODE == 200 || $HTTP_CODE == 404 ]] && num_le "$HTTP_TIME" "$limit"
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
        http_get "$(proc_ns "$name")" "$(proc_url "$name")/api/supernode/alive" 2 ready
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
        alive_has "$sn" "$loc" ready && return 0
        sleep 0.1
    done
    show_log_tail "$node"
    die "$node did not register with $sn in time"
}

# wait_group FROM ID LOCATION: FROM finds ID at LOCATION, i.e. the multicast group works.
wait_group() {
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        search_finds "$1" "$2" "$3" ready && return 0
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
    mapfile -t IDS2 < <(unique_ids node2)
    mapfile -t IDS3 < <(unique_ids node3)
    ((${#IDS1[@]} && ${#IDS2[@]} && ${#IDS3[@]} >= 2)) ||
        die "resources/node1..3 need files of their own (node3 at least two)"
    # A valid id nobody holds (not the all-zero id, which the supernodes use as a ping).
    NOBODY_ID=$(printf 'superpeer lab: nobody holds this' | sha256sum | cut -d' ' -f1)
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

# Drills 2-5: supernode3 on host-3 joins, GROUP_SIZE=3 everywhere, short timings.
start_partition_cluster() {
    local -a fast_sn=(MULTICAST_GROUP_SIZE=3 LIVENESS_PERIOD_MS="$FAST_LIVENESS_MS"
        LIVENESS_MISSES="$LIVENESS_MISSES" HEALTH_TIMEOUT_MS="$FAST_HEALTH_TIMEOUT_MS"
        SEARCH_TIMEOUT_MS="$SEARCH_TIMEOUT_MS")
    local -a fast_node=(HEARTBEAT_MS="$FAST_HEARTBEAT_MS" REGISTER_RETRY_MAX_MS=1000
        SUPERNODE_TIMEOUT_MS=1000)
    start_proc supernode1 1 supernode 5000 "${fast_sn[@]}"
    start_proc supernode2 1 supernode 5001 "${fast_sn[@]}"
    start_proc supernode3 3 supernode 5002 "${fast_sn[@]}"
    wait_supernode_ready supernode1
    wait_supernode_ready supernode2
    wait_supernode_ready supernode3
    start_proc node1 2 node 8000 SUPERNODE_ENDPOINT="$SN1_API" \
        RESOURCE_PATH="$ROOT/resources/node1" NODE_NAME=node1 "${fast_node[@]}"
    start_proc node2 3 node 8000 SUPERNODE_ENDPOINT="$SN1_API" \
        RESOURCE_PATH="$ROOT/resources/node2" NODE_NAME=node2 "${fast_node[@]}"
    start_proc node3 3 node 8001 SUPERNODE_ENDPOINT="$SN2_API" \
        RESOURCE_PATH="$ROOT/resources/node3" NODE_NAME=node3 "${fast_node[@]}"
    wait_registered node1 supernode1
    wait_registered node2 supernode1
    wait_registered node3 supernode2
    wait_group supernode1 "${IDS3[0]}" "$(proc_loc node3)"
    wait_group supernode3 "${IDS2[0]}" "$(proc_loc node2)"
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
    stop_stall_watch
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

# --- test: results -------------------------------------------------------------------------

PASSED=0
FAILED=0

# result OK|NOK TEXT: one PASS/FAIL line.
result() {
    if [[ $1 == OK ]]; then
        PASSED=$((PASSED + 1))
        echo "PASS  $2"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL  $2"
    fi
}

note() {
    echo "      $*"
}

# --- test: the seed's demonstration across hosts -------------------------------------------

demo_checks() {
    local id=${IDS3[0]} loc3 got ok
    loc3=$(proc_loc node3)
    echo "== demo: the seed's walk-through across hosts"
    # node2 (host-3, at supernode1) asks for a node3 file (node3 is at supernode2).
    http_get sp-host3 "$(proc_url node2)/api/node/resources/$id" "$CURL_MAX_S"
    got=$(json_read info "$(http_body)")
    ok=NOK
    if [[ $HTTP_CODE == 302 && $got == "$loc3" ]] &&
        grep -qi "^location: http://$loc3/" "$STATE/http/main.hdr"; then
        ok=OK
    fi
    result "$ok" "demo: node2 (host-3) asks for node3's ${id:0:12}: HTTP $HTTP_CODE, location $got (want 302, $loc3) in ${HTTP_TIME}s"

    # node1 (host-2, at supernode1) finds another node3 file through supernode1's multicast
    # search, and downloads it from host-3 with curl -L.
    id=${IDS3[1]}
    http_get sp-host2 "$(proc_url node1)/api/node/resources/$id" "$CURL_MAX_S"
    got=$(json_read info "$(http_body)")
    local sum=none
    if ip netns exec sp-host2 curl -sfL --noproxy '*' --max-time "$CURL_MAX_S" \
        -o "$STATE/http/download" "$(proc_url node1)/api/node/resources/$id/content"; then
        sum=$(sha256sum "$STATE/http/download" | cut -d' ' -f1)
    fi
    ok=NOK
    [[ $HTTP_CODE == 302 && $got == "$loc3" && $sum == "$id" ]] && ok=OK
    result "$ok" "demo: node1 (host-2) finds ${id:0:12} (registered at supernode2) at $got via multicast, HTTP $HTTP_CODE; curl -L download sha256 ${sum:0:12} (want ${id:0:12})"
}

# --- drill 1: kill node3 under the default liveness -----------------------------------------

drill_node_death() {
    local id=${IDS3[0]} loc3 t0 t_alive="" t_search="" deadline ok=NOK
    loc3=$(proc_loc node3)
    echo "== drill 1: kill node3 (supernode2, default liveness: every 5 s, removed at 2 misses)"
    search_finds supernode1 "$id" "$loc3" || note "(before: supernode1 did not find node3's file: HTTP $HTTP_CODE)"
    stop_proc node3 KILL
    t0=$(now)
    deadline=$((SECONDS + 25))
    while [[ -z $t_alive || -z $t_search ]] && ((SECONDS < deadline)); do
        if [[ -z $t_alive ]] && ! alive_has supernode2 "$loc3"; then
            [[ $HTTP_CODE == 200 ]] && t_alive=$(since "$t0")
        fi
        if [[ -z $t_search ]] && ! search_finds supernode1 "$id" "$loc3"; then
            [[ $HTTP_CODE == 404 ]] && t_search=$(since "$t0")
        fi
        sleep 0.2
    done
    # Removal needs two missed checks: never before one full period (5 s) after the death,
    # and at the latest two periods plus the health time-out and some slack (15 s), plus any
    # time the machine stood still.
    local t_end hi
    t_end=$(now)
    hi=$(add 15.5 "$(stalled_between "$t0" "$t_end")")
    if [[ -n $t_alive && -n $t_search ]] && num_le 4.8 "$t_alive" && num_le "$t_alive" "$hi" &&
        num_le 4.8 "$t_search" && num_le "$t_search" "$hi"; then
        ok=OK
    fi
    local gone
    gone="left supernode2's alive after ${t_alive:-never}s, supernode1's searches after ${t_search:-never}s (want 5-15 s)$(stall_note "$t0" "$t_end")"

    # Start it again: it registers at start-up and is found again.
    local t1 t_back="" ok_back=NOK
    launch_proc node3
    t1=$(now)
    deadline=$((SECONDS + 20))
    while [[ -z $t_back ]] && ((SECONDS < deadline)); do
        if alive_has supernode2 "$loc3" && search_finds supernode1 "$id" "$loc3"; then
            t_back=$(since "$t1")
        else
            sleep 0.1
        fi
    done
    [[ -n $t_back ]] && ok_back=OK
    [[ $ok_back == OK ]] || ok=NOK
    result "$ok" "drill 1: node3 killed: $gone; restarted: found again after ${t_back:-never}s$(stall_note "$t1" "$(now)")"
}

# --- drill 2: host-3 cut off from the LAN ---------------------------------------------------

drill_partition() {
    local id3=${IDS3[0]} id2=${IDS2[0]} id1=${IDS1[0]} loc2 loc3 ok=OK t0 deadline
    loc2=$(proc_loc node2)
    loc3=$(proc_loc node3)
    echo "== drill 2: host-3 cut off (bridge port h3 down), GROUP_SIZE=3, liveness every $(ms_to_s "$FAST_LIVENESS_MS") s, $LIVENESS_MISSES misses"
    search_at supernode1 "$NOBODY_ID"
    local before=$HTTP_TIME
    note "before the cut: a negative search at supernode1 takes ${before}s (HTTP $HTTP_CODE; all peers answer)"

    ip -n "$LAN_NS" link set h3 down
    t0=$(now)
    # Searches at supernode1 in the background while the foreground watches the indexes.
    local searches="$STATE/drill2-searches"
    : >"$searches"
    (
        for _ in 1 2 3 4; do
            search_at supernode1 "$NOBODY_ID" bg
            echo "nobody $HTTP_CODE $HTTP_TIME $HTTP_END" >>"$searches"
            search_at supernode1 "$id3" bg
            echo "node3 $HTTP_CODE $HTTP_TIME $HTTP_END $(head -n 1 <<<"$SEARCH_LOCS")" >>"$searches"
        done
    ) &
    local searcher=$!
    local t_node2="" t_node3=""
    deadline=$((SECONDS + 20))
    while [[ -z $t_node2 || -z $t_node3 ]] && ((SECONDS < deadline)); do
        if [[ -z $t_node2 ]] && ! alive_has supernode1 "$loc2" fg; then
            [[ $HTTP_CODE == 200 ]] && t_node2=$(since "$t0")
        fi
        if [[ -z $t_node3 ]] && ! alive_has supernode2 "$loc3" fg; then
            [[ $HTTP_CODE == 200 ]] && t_node3=$(since "$t0")
        fi
        sleep 0.2
    done
    wait "$searcher" || true

    # Every search ended in time: a 404 for the unknown id (supernode3 cannot answer, so
    # at the time-out), a 200 for node3's file while supernode2 still lists it, then 404.
    local kind code secs end rest worst=0 n=0 late=0 stalled=0
    while read -r kind code secs end rest; do
        n=$((n + 1))
        HTTP_CODE=$code HTTP_TIME=$secs HTTP_END=$end
        if ! search_in_time || { [[ $kind == nobody ]] && [[ $code != 404 ]]; } ||
            { [[ $code == 200 ]] && [[ $rest != "$loc3" ]]; }; then
            late=$((late + 1))
            note "bad search during the cut: $kind HTTP $code in ${secs}s $rest"
        fi
        num_le "$SEARCH_STALL" 0.3 || note "$kind search: ${secs}s, of which the machine stalled ${SEARCH_STALL}s"
        stalled=$(add "$stalled" "$SEARCH_STALL")
        num_le "$secs" "$worst" || worst=$secs
    done <"$searches"
    ((n == 8 && late == 0)) || ok=NOK
    note "during the cut: $n searches at supernode1, $late late or wrong, slowest ${worst}s (time-out $(ms_to_s "$SEARCH_TIMEOUT_MS") s + ${SEARCH_MARGIN_S} s)"

    # Two missed checks: not before one period, and by two periods + health time-out + slack.
    local lo hi
    lo=$(awk -v p="$FAST_LIVENESS_MS" -v m="$LIVENESS_MISSES" 'BEGIN { print p * (m - 1) / 1000 - 0.2 }')
    hi=$(awk -v p="$FAST_LIVENESS_MS" -v m="$LIVENESS_MISSES" -v h="$FAST_HEALTH_TIMEOUT_MS" 'BEGIN { print (p * (m + 1) + h) / 1000 + 1 }')
    local t_watch_end
    t_watch_end=$(now)
    if [[ -z $t_node2 ]] || ! num_le "$lo" "$t_node2" ||
        ! num_le "$t_node2" "$(add "$hi" "$(stalled_between "$t0" "$t_watch_end")")"; then
        ok=NOK
    fi
    note "node2 left supernode1's alive after ${t_node2:-never}s (want $lo-$hi s); node3 left supernode2's after ${t_node3:-never}s$(stall_note "$t0" "$t_watch_end")"
    # ... and its files left the index with it: supernode1 no longer finds them (in time).
    search_at supernode1 "$id2"
    if [[ $HTTP_CODE != 404 ]] || ! search_in_time; then
        ok=NOK
    fi
    note "node2's file at supernode1 after its removal: HTTP $HTTP_CODE in ${HTTP_TIME}s (want 404 within the time-out)"

    # Cable back in: the nodes' heartbeats get 404 and they register again; nothing restarts.
    ip -n "$LAN_NS" link set h3 up
    local t1 t_back="" ok_back=NOK
    t1=$(now)
    deadline=$((SECONDS + 30))
    while [[ -z $t_back ]] && ((SECONDS < deadline)); do
        if search_finds supernode1 "$id3" "$loc3" && search_finds supernode1 "$id2" "$loc2" &&
            search_finds supernode3 "$id1" "$(proc_loc node1)"; then
            t_back=$(since "$t1")
        else
            sleep 0.2
        fi
    done
    [[ -n $t_back ]] && ok_back=OK
    search_at supernode1 "$NOBODY_ID"
    note "link restored: node2's and node3's files found at supernode1, node1's at supernode3 after ${t_back:-never}s$(stall_note "$t1" "$HTTP_END"); a negative search takes ${HTTP_TIME}s again (HTTP $HTTP_CODE)"
    [[ $ok_back == OK ]] || ok=NOK
    local stall_text=""
    num_le "$stalled" 0.3 || stall_text=" (machine stalled ${stalled}s during them)"
    result "$ok" "drill 2: host-3 cut off: $n searches all ended within $(ms_to_s "$SEARCH_TIMEOUT_MS") s + ${SEARCH_MARGIN_S} s (slowest ${worst}s)$stall_text; node2 left supernode1 after ${t_node2:-never}s; link back: all found again after ${t_back:-never}s"
}

# --- drill 3: supernode2 restarts ------------------------------------------------------------

drill_supernode_restart() {
    local id=${IDS3[0]} loc3 ok=NOK t0 deadline t_back="" during
    loc3=$(proc_loc node3)
    echo "== drill 3: kill supernode2 and start it again (node3 must register again by itself)"
    local regs_before
    regs_before=$(grep -c 'registered' "$STATE/procs/node3.log" || true)
    stop_proc supernode2 KILL
    search_at supernode1 "$id"
    local in_time=OK
    { [[ $HTTP_CODE == 404 ]] && search_in_time; } || in_time=NOK
    during="HTTP $HTTP_CODE in ${HTTP_TIME}s$(stall_note "$(add "$HTTP_END" "-$HTTP_TIME")" "$HTTP_END")"
    launch_proc supernode2
    t0=$(now)
    wait_supernode_ready supernode2
    deadline=$((SECONDS + 20))
    while [[ -z $t_back ]] && ((SECONDS < deadline)); do
        if alive_has supernode2 "$loc3" && search_finds supernode1 "$id" "$loc3"; then
            t_back=$(since "$t0")
        else
            sleep 0.1
        fi
    done
    local regs_after
    regs_after=$(grep -c 'registered' "$STATE/procs/node3.log" || true)
    [[ -n $t_back && $in_time == OK ]] && ok=OK
    note "while supernode2 was down, node3's file at supernode1: $during (want 404 within the time-out)"
    note "node3's log: $((regs_after - regs_before)) new line(s) mentioning 'registered'"
    result "$ok" "drill 3: supernode2 restarted: node3 registered again and its file is found at supernode1 after ${t_back:-never}s (heartbeat every $(ms_to_s "$FAST_HEARTBEAT_MS") s)$(stall_note "$t0" "$(now)")"
}

# --- drill 4: 20% multicast loss on host-1 ----------------------------------------------------

# Installs a random drop of 20% of host-1's outgoing multicast; sets LOSS_TOOL.
add_multicast_loss() {
    if ! command -v nft >/dev/null 2>&1 && ! command -v iptables >/dev/null 2>&1; then
        say "nft is missing; installing it (apt-get install -y nftables)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null 2>&1 || true
    fi
    if command -v nft >/dev/null 2>&1; then
        # The first rule counts all multicast, the second drops a random 20% of it.
        ip netns exec sp-host1 nft -f - <<'EOF'
table ip sp_lab_loss {
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr 224.0.0.0/4 counter
        ip daddr 224.0.0.0/4 numgen random mod 100 < 20 counter drop
    }
}
EOF
        LOSS_TOOL=nft
    elif command -v iptables >/dev/null 2>&1; then
        ip netns exec sp-host1 iptables -A OUTPUT -d 224.0.0.0/4 \
            -m statistic --mode random --probability 0.2 -j DROP
        LOSS_TOOL=iptables
    else
        return 1
    fi
}

# "sent dropped" multicast datagrams counted by the loss rule.
multicast_loss_counts() {
    if [[ $LOSS_TOOL == nft ]]; then
        ip netns exec sp-host1 nft list table ip sp_lab_loss |
            grep -o 'packets [0-9]*' | awk '{ n[NR] = $2 } END { print n[1] + 0, n[2] + 0 }'
    else
        ip netns exec sp-host1 iptables -L OUTPUT -v -x -n |
            awk '$3 == "DROP" { print "?", $1 }'
    fi
}

remove_multicast_loss() {
    if [[ $LOSS_TOOL == nft ]]; then
        ip netns exec sp-host1 nft delete table ip sp_lab_loss
    else
        ip netns exec sp-host1 iptables -D OUTPUT -d 224.0.0.0/4 \
            -m statistic --mode random --probability 0.2 -j DROP
    fi
}

drill_multicast_loss() {
    local id=${IDS3[0]} loc3 ok=NOK i good=0 times="$STATE/drill4-times" t0
    loc3=$(proc_loc node3)
    t0=$(now)
    echo "== drill 4: 20% of host-1's outgoing multicast dropped; 100 searches at supernode1 for a file only supernode2 knows"
    LOSS_TOOL=""
    if ! add_multicast_loss; then
        result NOK "drill 4: neither nft nor iptables could be used to drop multicast in sp-host1"
        return 0
    fi
    : >"$times"
    local stalled excused=0
    for i in $(seq 1 100); do
        if search_finds supernode1 "$id" "$loc3"; then
            good=$((good + 1))
        else
            stalled=$(stalled_between "$(add "$HTTP_END" "-$HTTP_TIME")" "$HTTP_END")
            # A search during which the machine stood still for seconds proves nothing.
            if num_le 0.5 "$stalled"; then
                excused=$((excused + 1))
                note "search $i: HTTP $HTTP_CODE in ${HTTP_TIME}s, the machine stalled ${stalled}s meanwhile: not counted"
            else
                note "search $i: HTTP $HTTP_CODE in ${HTTP_TIME}s"
            fi
        fi
        echo "$HTTP_TIME" >>"$times"
    done
    local counts
    counts=$(multicast_loss_counts)
    remove_multicast_loss
    local stats
    stats=$(sort -n "$times" | awk '{ t[NR] = $1 } END { m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2; printf "median %.3fs, worst %.3fs", m, t[NR] }')
    note "$LOSS_TOOL counted (multicast sent, dropped) on host-1: $counts"
    ((good >= 99 - excused)) && ok=OK
    local counted=$((100 - excused))
    result "$ok" "drill 4: 20% multicast loss on host-1: $good/$counted searches found node3's file (want >= $((counted - 1))); $stats$(stall_note "$t0" "$(now)")"
}

# --- drill 5: a supernode with a wrong (too big) GROUP_SIZE -------------------------------------

drill_wrong_group_size() {
    local ok=OK i worst=0 codes="" loc3
    loc3=$(proc_loc node3)
    echo "== drill 5: supernode4 on host-2 with GROUP_SIZE=5 in a group of 4 supernodes"
    start_proc supernode4 2 supernode 5003 MULTICAST_GROUP_SIZE=5 \
        SEARCH_TIMEOUT_MS="$SEARCH_TIMEOUT_MS" LIVENESS_PERIOD_MS="$FAST_LIVENESS_MS"
    wait_supernode_ready supernode4
    for i in 1 2 3; do
        search_at supernode4 "$NOBODY_ID"
        codes+="$HTTP_CODE "
        { [[ $HTTP_CODE == 404 ]] && search_in_time; } || ok=NOK
        num_le "$SEARCH_STALL" 0.3 || note "search $i: ${HTTP_TIME}s, of which the machine stalled ${SEARCH_STALL}s"
        num_le "$HTTP_TIME" "$worst" || worst=$HTTP_TIME
    done
    # Its positive searches still end at the first answer.
    local pos
    if search_finds supernode4 "${IDS3[0]}" "$loc3"; then
        pos="found in ${HTTP_TIME}s"
    else
        pos="NOT found (HTTP $HTTP_CODE in ${HTTP_TIME}s)"
        ok=NOK
    fi
    stop_proc supernode4 TERM
    result "$ok" "drill 5: GROUP_SIZE=5 with 4 supernodes: 3 negative searches answered ${codes% } in at most ${worst}s (time-out $(ms_to_s "$SEARCH_TIMEOUT_MS") s + ${SEARCH_MARGIN_S} s); a positive one $pos"
}

# --- test ------------------------------------------------------------------------------------

on_test_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if ((rc != 0 || FAILED > 0)) && [[ -d $STATE/procs ]]; then
        rm -rf "$FAILED_LOGS"
        mkdir -p "$FAILED_LOGS"
        cp "$STATE"/procs/*.log "$FAILED_LOGS"/ 2>/dev/null || true
        say "logs of this run kept in $FAILED_LOGS/"
    fi
    lab_teardown
    rm -f "$STATE.lock"
    exit "$rc"
}

cmd_test() {
    require_root test
    require_tools
    take_lock
    local started=$SECONDS
    if lab_is_up; then
        say "tearing down the lab that is up"
        lab_teardown
    fi
    trap on_test_exit EXIT
    trap 'echo; say "interrupted"; exit 130' INT TERM
    rm -rf "$FAILED_LOGS"
    mkdir -p "$STATE"
    start_stall_watch
    lab_up
    demo_checks
    drill_node_death

    say "restarting the processes: + supernode3 on host-3 ($(host_ip 3):5002), GROUP_SIZE=3 everywhere;"
    say "  node1, node2 -> supernode1, node3 -> supernode2 (the seed's); liveness every $(ms_to_s "$FAST_LIVENESS_MS") s,"
    say "  $LIVENESS_MISSES misses, health time-out $(ms_to_s "$FAST_HEALTH_TIMEOUT_MS") s, node heartbeat $(ms_to_s "$FAST_HEARTBEAT_MS") s"
    stop_all_procs
    rm -f "$STATE"/procs/*.spec
    start_partition_cluster
    drill_partition
    drill_supernode_restart
    drill_multicast_loss
    drill_wrong_group_size

    say "total time $((SECONDS - started)) s; the machine stalled $(stalled_between 0 "$(now)") s in all"
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0)) || exit 1
}

usage() {
    cat >&2 <<EOF
usage: scripts/lab.sh up|down|test|status
  up      build, make the namespaces, start the seed's cluster, leave it running
  down    stop the lab's processes, delete its namespaces and state dir ($STATE)
  test    a fresh lab, the demonstration and the fault drills; tears everything down after
  status  what runs where
EOF
    exit 2
}

main() {
    [[ $# -eq 1 ]] || usage
    case $1 in
        up) cmd_up ;;
        down) cmd_down ;;
        test) cmd_test ;;
        status) cmd_status ;;
        *) usage ;;
    esac
}

main "$@"
