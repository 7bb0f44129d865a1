#!/usr/bin/env bash
# bench/run.sh (make bench): the performance measurements of superpeer, each against a
# reference measured in the same run on the same machine, as one table.
#
#   references: nginx (Debian) serving a static copy of the same answer with the same wrk
#               command; a raw UDP multicast ping-pong between two processes on 127.0.0.1;
#               `openssl dgst -sha256` over the same files a node hashes.
#
# Builds the release binaries (and the static musl one), installs what is missing (wrk, nginx,
# openssl), starts everything on 127.0.0.1 (TCP ports 27000-27999 or kernel-chosen ones,
# multicast groups 239.77.1.x on the loopback interface, TTL 1), runs every measurement, prints
# the table, writes it to bench/results.md with the machine's description, and stops every
# process it started. A measurement that fails is marked ERROR; the others still run.
#
# Environment: BENCH_WRK_SECONDS (5), BENCH_RUNS (3), BENCH_KEEP_DATA=0 to delete the
# 1 GiB of test files at the end (kept, by default, in bench/data/ for the next run),
# BENCH_STRICT=1 to exit 1 when an item misses its target (by default the exit status is 0
# once the table is written), BENCH_ONLY="2 2k" to run only those items (their table goes to
# bench/logs/results.md, so bench/results.md keeps the last whole run). Logs of every instance: bench/logs/.

# Measurement functions are called through `measure`, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
BENCH=$ROOT/bench
LOGS=$BENCH/logs
DATA=$BENCH/data
RESULTS=$BENCH/results.md
ONLY=${BENCH_ONLY:-}
[[ -z $ONLY ]] || RESULTS=$BENCH/logs/results.md
TOOLS_DIR=$BENCH/tools
TOOL=$TOOLS_DIR/target/release/sp-bench
LUA=$BENCH/wrk/paths.lua
BIN=$ROOT/target/release/superpeer
MUSL_TARGET=x86_64-unknown-linux-musl
MUSL_BIN=$ROOT/target/$MUSL_TARGET/release/superpeer
HOST=127.0.0.1
NGINX_PORT=27000
WRK_SECONDS=${BENCH_WRK_SECONDS:-5}
RUNS=${BENCH_RUNS:-3}
# wrk's default time-out (2 s) stays: a connection whose request is never answered counts.
WRK_ARGS=(-t2 -c32 "-d${WRK_SECONDS}s" --timeout 2s)
# The whole run must stay under 10 minutes: a measurement that would start after this many
# seconds is skipped and marked so.
BUDGET_SECONDS=${BENCH_BUDGET_SECONDS:-540}
# Liveness period of the supernodes that hold fake registrations (nothing listens there).
NO_SWEEP_MS=3600000

# shellcheck source=scripts/clean-env.sh
source "$ROOT/scripts/clean-env.sh"

# ---------------------------------------------------------------------------------------------
# Processes: every one this script starts is recorded by PID and stopped by PID.

declare -A RUNNING=()   # pid -> name
declare -A PID=()       # name -> pid
declare -A PORT=()      # name -> HTTP port

say() {
    printf '[bench %3ds] %s\n' "$SECONDS" "$*" >&2
    printf '[%3ds] %s\n' "$SECONDS" "$*" >>"$LOGS/bench.log" 2>/dev/null
}

# stop_pids PID...: TERM to every one at once, then each waited for (10 s in all), then KILL:
# a supernode takes a moment to stop, so one after another would take minutes for the scale
# rows' groups.
stop_pids() {
    local pid deadline=$((SECONDS + 10))
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        unset "RUNNING[$pid]"
    done
}

stop() {   # name...: the named instances, all at once
    local name pids=()
    for name in "$@"; do
        if [[ -n "${PID[$name]:-}" ]]; then
            pids+=("${PID[$name]}")
            unset "PID[$name]"
        fi
    done
    if ((${#pids[@]})); then
        stop_pids "${pids[@]}"
    fi
}

cleanup() {
    trap - EXIT INT TERM
    if ((${#RUNNING[@]})); then
        stop_pids "${!RUNNING[@]}"
    fi
    if [[ "${BENCH_KEEP_DATA:-1}" == 0 ]]; then
        rm -rf "$DATA"
    fi
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

port_busy() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# start NAME ROLE BINARY PORT [KEY=VALUE ...]: starts an instance with exactly these settings
# on 127.0.0.1:PORT, logs to bench/logs/NAME.log, waits until it accepts connections.
# (A fixed port: at LOG_LEVEL=warn the instance does not log the one it got.)
start() {
    local name=$1 role=$2 bin=$3 port=$4
    shift 4
    local log=$LOGS/$name.log
    if port_busy "$port"; then
        say "$name: port $port on $HOST is already in use"
        return 1
    fi
    env LHOST="$HOST" LPORT="$port" LOG_LEVEL=warn "$@" "$bin" "$role" >"$log" 2>&1 &
    local pid=$!
    RUNNING[$pid]=$name
    PID[$name]=$pid
    local deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited at start-up: $(tail -n 3 "$log" 2>/dev/null)"
            stop "$name"
            return 1
        fi
        if port_busy "$port"; then
            PORT[$name]=$port
            return 0
        fi
        sleep 0.05
    done
    say "$name did not listen on port $port within 20 s (see $log)"
    stop "$name"
    return 1
}

# wait_log NAME PATTERN SECONDS: polls the instance's log for an extended regex.
wait_log() {
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        grep -qE "$2" "$LOGS/$1.log" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# Supernode settings: its own group on loopback, warn-level logs, no sweeps of fake nodes.
super_env() {   # group-last-octet group-size
    printf '%s\n' "MULTICAST_LOCATION=239.77.1.$1:$((27100 + $1))" "MULTICAST_GROUP_SIZE=$2" \
        "MULTICAST_INTERFACE=$HOST" "MULTICAST_TTL=1" "LIVENESS_PERIOD_MS=$NO_SWEEP_MS"
}

rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Numbers and the table

median() {   # values...
    printf '%s\n' "$@" | grep -E '^[0-9.eE+-]+$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}

calc() {   # awk expression
    awk "BEGIN {x = $1; if (x == int(x)) printf \"%d\", x; else printf \"%.3g\", x}" 2>/dev/null
}

fmt() {   # number [decimals]: grouped thousands
    LC_ALL=C awk -v x="$1" -v d="${2:-0}" 'BEGIN {
        s = sprintf("%." d "f", x); split(s, p, "."); i = p[1]; neg = (i ~ /^-/); sub(/^-/, "", i)
        o = ""; while (length(i) > 3) { o = "," substr(i, length(i) - 2) o; i = substr(i, 1, length(i) - 3) }
        printf "%s%s%s%s", (neg ? "-" : ""), i, o, (d > 0 ? "." p[2] : "") }'
}

# kv KEY LINE: the value of key=value in a tool's output line.
kv() {
    tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2; exit}'
}

# kvn KEY LINE: a count from a tool's output line; 1 when it is missing (the tool failed).
kvn() {
    local v
    v=$(kv "$1" "$2")
    if [[ "$v" =~ ^[0-9]+$ ]]; then echo "$v"; else echo 1; fi
}

is_num() {
    [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]
}

ROWS=()
FAILED=0
row() {   # num measurement figure reference ratio target verdict
    ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |")
    [[ "$7" == PASS ]] || FAILED=$((FAILED + 1))
}

# rps_text RPS BAD IDLE: "12,345 req/s", with the failed requests and the connections never
# served (the most in one run), when there were any.
rps_text() {
    local text
    text="$(fmt "$1") req/s"
    (($2 > 0)) && text+=", $2 failed or wrong"
    ((${3:-0} > 0)) && text+=" (up to $3 of 32 connections never served)"
    echo "$text"
}

verdict() {   # awk condition
    if awk "BEGIN {exit !($1)}" 2>/dev/null; then echo PASS; else echo FAIL; fi
}

NOTES=()
note() {
    NOTES+=("$*")
    say "note: $*"
}

# measure NUM NAME FUNCTION: runs one measurement; one that adds no row gets an ERROR row.
measure() {
    local num=$1 name=$2 fn=$3 before=${#ROWS[@]}
    if [[ -n $ONLY && " $ONLY " != *" ${num%%,*} "* ]]; then
        return
    fi
    if ((SECONDS > BUDGET_SECONDS)); then
        row "$num" "$name" "-" "-" "-" "-" "SKIPPED (time budget)"
        return
    fi
    say "== $num: $name"
    "$fn"
    if ((${#ROWS[@]} == before)); then
        row "$num" "$name" "-" "-" "-" "-" "ERROR (see the log above)"
    fi
}

# ---------------------------------------------------------------------------------------------
# wrk

WRK_RPS=0
WRK_BAD=0
WRK_IDLE=0
WRK_REQS=0
# wrk_run LABEL URL [PATHS_FILE [EXPECT [STATUS]]]: one wrk run; sets WRK_RPS, WRK_REQS (the
# requests answered), WRK_BAD (non-2xx/3xx answers, socket errors and, with EXPECT, answers
# without it; with a STATUS other than 200, e.g. 404, non-2xx answers are expected and the
# caller checks them) and WRK_IDLE: the server's connections that, halfway through the run, had
# not sent a single byte (wrk counts no error for a connection whose first request is never
# answered; it just carries no load).
wrk_run() {
    local label=$1 url=$2 paths=${3:-} expect=${4:-} status=${5:-200} out port
    local args=("${WRK_ARGS[@]}")
    [[ -n "$paths" ]] && args+=(-s "$LUA")
    port=${url#http://*:}
    port=${port%%/*}
    WRK_PATHS=$paths WRK_EXPECT=$expect timeout $((WRK_SECONDS + 20)) "${WRK_PIN[@]}" wrk "${args[@]}" "$url" >"$LOGS/wrk.out" 2>&1 &
    local pid=$!
    RUNNING[$pid]=wrk
    sleep "$(awk -v s="$WRK_SECONDS" 'BEGIN {print s / 2}')"
    WRK_IDLE=$(ss -Htni state established "( sport = :$port )" 2>/dev/null |
        awk '/bytes_received/ { if ($0 !~ /bytes_sent:[1-9]/) n++ } END {print n + 0}')
    wait "$pid"
    unset "RUNNING[$pid]"
    out=$(cat "$LOGS/wrk.out")
    printf '%s\n' "== $label" "$out" >>"$LOGS/wrk.log"
    WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    WRK_REQS=$(awk '/ requests in / {print $1; exit}' <<<"$out")
    is_num "$WRK_REQS" || WRK_REQS=0
    local non2xx=0 sock wrong
    # Another status expected: non-2xx answers are no error here.
    [[ $status == 200 ]] && non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    sock=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
    wrong=$(awk '/^WRONG_ANSWERS/ {print $2}' <<<"$out")
    WRK_BAD=$((${non2xx:-0} + ${sock:-0} + ${wrong:-0}))
    is_num "$WRK_IDLE" || WRK_IDLE=0
    if ! is_num "$WRK_RPS"; then
        say "wrk $label failed: $(tail -n 2 <<<"$out")"
        WRK_RPS=0
        return 1
    fi
    say "wrk $label: $WRK_RPS req/s, $WRK_BAD errors, $WRK_IDLE of 32 connections not served at half time"
}

# pin NAME...: the named instances on core 0 (every thread), wrk on core 1, for the rows that
# compare two superpeer variants. Unpinned, a run moves by 10-20% with where the scheduler
# puts wrk's threads and the server's (one core or two), which a ratio of 0.9 cannot bear.
# unpin NAME... undoes it.
WRK_PIN=()
pin() {
    (($(nproc) >= 2)) || return 0
    local name
    for name in "$@"; do
        taskset -a -p -c 0 "${PID[$name]}" >/dev/null 2>&1 || return 1
    done
    WRK_PIN=(taskset -c 1)
}
unpin() {
    local name
    for name in "$@"; do
        [[ -n "${PID[$name]:-}" ]] && taskset -a -p -c "0-$(($(nproc) - 1))" "${PID[$name]}" >/dev/null 2>&1
    done
    WRK_PIN=()
}

# wrk_pair A_LABEL A_URL A_PATHS B_LABEL B_URL B_PATHS [EXPECT]: RUNS (or PAIR_RUNS)
# interleaved runs of each; sets RPS_A and RPS_B (medians), BAD_A and BAD_B (sums), IDLE_A and
# IDLE_B (the most).
wrk_pair() {
    local a=() b=() i runs=${PAIR_RUNS:-$RUNS}
    BAD_A=0
    BAD_B=0
    IDLE_A=0
    IDLE_B=0
    for ((i = 0; i < runs; i++)); do
        wrk_run "$1" "$2" "$3" "${7:-}" && a+=("$WRK_RPS")
        BAD_A=$((BAD_A + WRK_BAD))
        ((WRK_IDLE > IDLE_A)) && IDLE_A=$WRK_IDLE
        wrk_run "$4" "$5" "$6" "${7:-}" && b+=("$WRK_RPS")
        BAD_B=$((BAD_B + WRK_BAD))
        ((WRK_IDLE > IDLE_B)) && IDLE_B=$WRK_IDLE
    done
    RPS_A=$(median "${a[@]}")
    RPS_B=$(median "${b[@]}")
    is_num "$RPS_A" && is_num "$RPS_B"
}

# ---------------------------------------------------------------------------------------------
# Set-up: tools, builds, data

install_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]} (apt-get)"
    bash "$ROOT/scripts/apt-install.sh" "${missing[@]}" >"$LOGS/apt.log" 2>&1
}

build() {
    say "building the release binary (cargo build --release)"
    cargo build --release --quiet || return 1
    say "building the static binary ($MUSL_TARGET)"
    STATIC_KIND=musl
    if [[ ! -d "$(rustc --print sysroot)/lib/rustlib/$MUSL_TARGET" ]] && command -v rustup >/dev/null 2>&1; then
        rustup target add "$MUSL_TARGET" >"$LOGS/rustup.log" 2>&1 || true
    fi
    if [[ -d "$(rustc --print sysroot)/lib/rustlib/$MUSL_TARGET" ]] &&
        cargo build --release --quiet --target "$MUSL_TARGET" 2>"$LOGS/musl-build.log"; then
        STATIC_BIN=$MUSL_BIN
    else
        # As make dist does: glibc linked statically when the musl target cannot be had.
        note "the $MUSL_TARGET target is not available; item 12 uses a static glibc build instead"
        STATIC_KIND="static glibc"
        RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
            cargo build --release --quiet --target x86_64-unknown-linux-gnu || return 1
        STATIC_BIN=$ROOT/target/x86_64-unknown-linux-gnu/release/superpeer
    fi
    say "building the bench tools (bench/tools)"
    (cd "$TOOLS_DIR" && cargo build --release --quiet) || return 1
}

# make_files DIR COUNT SIZE SEED: files of pseudo-random content, cached between runs.
make_files() {
    local dir=$1 stamp="$1/.complete-$2x$3-$4"
    [[ -e "$stamp" ]] && return 0
    rm -rf "$dir"
    say "writing $2 files of $3 bytes in ${dir#"$ROOT"/}"
    timeout 300 "$TOOL" mkfiles --dir "$dir" --count "$2" --size "$3" --seed "$4" >/dev/null || return 1
    touch "$stamp"
}

start_nginx() {
    local dir=$DATA/nginx
    if port_busy "$NGINX_PORT"; then
        say "nginx: port $NGINX_PORT on $HOST is already in use"
        return 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir/www" "$dir/tmp"
    chmod 755 "$DATA" "$dir" "$dir/www"
    cat >"$dir/nginx.conf" <<EOF
# The reference server: Debian's nginx with its default settings for a static site, bound to
# $HOST only, in the foreground, without an access log (superpeer logs no request either).
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events {
    worker_connections 1024;
}
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/json;
    access_log off;
    client_body_temp_path $dir/tmp;
    server {
        listen $HOST:$NGINX_PORT;
        root $dir/www;
        location / {
        }
    }
}
EOF
    local log=$LOGS/nginx.log
    "$NGINX_BIN" -p "$dir" -e "$LOGS/nginx-error.log" -c "$dir/nginx.conf" >"$log" 2>&1 &
    local pid=$!
    RUNNING[$pid]=nginx
    PID[nginx]=$pid
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if port_busy "$NGINX_PORT"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    say "nginx did not start: $(cat "$log" "$LOGS/nginx-error.log" 2>/dev/null | tail -n 3)"
    stop nginx
    return 1
}

# ---------------------------------------------------------------------------------------------
# The measurements

# The floor of a remote search: a UDP multicast round trip between two processes, pinned to
# two different cores (the wake-up of the other core is part of every remote search here);
# the same-core figure is noted too.
PP_US=""
PP_SAME_US=""
pingpong() {
    local v=() i out cross=(--cpu-a 0 --cpu-b 1) same=(--cpu-a 0 --cpu-b 0)
    if (($(nproc) < 2)); then
        cross=()
    fi
    for ((i = 0; i < RUNS; i++)); do
        out=$(timeout 60 "$TOOL" pingpong --group 239.77.1.9 --port-a 27109 --port-b 27110 --n 5000 "${cross[@]}" 2>&1 | tail -n 1)
        say "ping-pong, two cores: $out"
        v+=("$(kv median_us "$out")")
    done
    PP_US=$(median "${v[@]}")
    out=$(timeout 60 "$TOOL" pingpong --group 239.77.1.9 --port-a 27109 --port-b 27110 --n 5000 "${same[@]}" 2>&1 | tail -n 1)
    say "ping-pong, one core: $out"
    PP_SAME_US=$(kv median_us "$out")
    is_num "$PP_US"
}

A_PATHS=$LOGS/paths-a-local.txt
B_PATHS=$LOGS/paths-b-remote.txt
ABSENT=$LOGS/paths-absent.txt
B_LOC=127.0.0.1:27802

# Supernodes a and b in one group (GROUP_SIZE=2): a holds 15 made-up resources, b 1,000.
setup_search_pair() {
    mapfile -t envs < <(super_env 1 2)
    start a supernode "$BIN" 27010 "${envs[@]}" || return 1
    start b supernode "$BIN" 27011 "${envs[@]}" || return 1
    timeout 60 "$TOOL" register --addr "$HOST:${PORT[a]}" --seed 1 --nodes 1 --per 15 \
        --port-base 27801 --sample 15 --sample-out "$A_PATHS" >/dev/null 2>&1 || return 1
    timeout 60 "$TOOL" register --addr "$HOST:${PORT[b]}" --seed 2 --nodes 1 --per 1000 \
        --port-base 27802 --sample 1000 --sample-out "$B_PATHS" >/dev/null 2>&1 || return 1
    "$TOOL" ids --seed 99 --n 1000 >"$ABSENT" || return 1
    # nginx serves the same answers, byte for byte, at the same paths.
    timeout 60 "$TOOL" mirror --addr "$HOST:${PORT[a]}" --paths "$A_PATHS" --root "$DATA/nginx/www" >/dev/null || return 1
    timeout 120 "$TOOL" mirror --addr "$HOST:${PORT[a]}" --paths "$B_PATHS" --root "$DATA/nginx/www" >/dev/null || return 1
}

m1_local_wrk() {
    [[ -n "${PORT[a]:-}" ]] || return 1
    wrk_pair "local search" "http://$HOST:${PORT[a]}" "$A_PATHS" \
        "nginx, same answers" "http://$HOST:$NGINX_PORT" "$A_PATHS" || return 1
    local ratio
    ratio=$(calc "$RPS_A / $RPS_B")
    row 1 "supernode local search, wrk keep-alive" "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" \
        "nginx $(fmt "$RPS_B") req/s" "$ratio" ">= 0.5 x nginx" \
        "$(verdict "$ratio >= 0.5 && $BAD_A == 0")"
}

# pair_against_a X GROUP PORT LABEL REGISTER_ARGS ENV...: a variant pair Xa, Xb (ports PORT
# and PORT+1, multicast group GROUP, with ENV), Xb holding b's 1,000 resources (registered
# with REGISTER_ARGS), searched remotely through Xa against a's same searches, all pinned
# and interleaved, two runs more than the other rows: a difference of a few percent is what
# these rows are about. Sets RPS_A (the variant), RPS_B (a), BAD_A, IDLE_A and PAIR_LINES
# (lines Xa logged).
pair_against_a() {
    local x=$1 group=$2 port=$3 label=$4 register=$5
    shift 5
    [[ -n "${PORT[a]:-}" && -n "${PORT[b]:-}" ]] || return 1
    mapfile -t envs < <(super_env "$group" 2)
    start "${x}a" supernode "$BIN" "$port" "${envs[@]}" "$@" || return 1
    # shellcheck disable=SC2086 # REGISTER_ARGS is a list of words
    if ! start "${x}b" supernode "$BIN" $((port + 1)) "${envs[@]}" "$@" ||
        ! timeout 60 "$TOOL" register --addr "$HOST:${PORT[${x}b]}" --seed 2 --nodes 1 --per 1000 \
            --port-base 27802 $register >/dev/null 2>&1 ||
        ! pin "${x}a" "${x}b" a b ||
        ! PAIR_RUNS=$((RUNS + 2)) wrk_pair "remote search, $label" "http://$HOST:${PORT[${x}a]}" "$B_PATHS" \
            "remote search, as a" "http://$HOST:${PORT[a]}" "$B_PATHS" "\"location\":\"$B_LOC\""; then
        unpin a b
        stop "${x}a" "${x}b"
        return 1
    fi
    unpin a b
    PAIR_LINES=$(wc -l <"$LOGS/${x}a.log")
    stop "${x}a" "${x}b"
}

# The cost of the cluster key: every datagram sealed and checked.
BENCH_KEY=bench-cluster-key-0123456789abcdef
m2k_remote_keyed() {
    pair_against_a k 6 27024 keyed "--key $BENCH_KEY" "CLUSTER_KEY=$BENCH_KEY" || return 1
    local ratio
    ratio=$(calc "$RPS_A / $RPS_B")
    row 2k "supernode remote search, keyed group (every datagram sealed and checked), wrk" \
        "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" "no key $(fmt "$RPS_B") req/s" "$ratio" \
        ">= 0.9 x no key, all correct (pinned)" "$(verdict "$ratio >= 0.9 && $BAD_A == 0")"
}

# The cost of logging at the default level (a summary line a minute, no line per search)
# against warn (the pair a, b).
m2i_remote_info() {
    pair_against_a i 8 27026 "LOG_LEVEL=info" "" LOG_LEVEL=info || return 1
    local ratio
    ratio=$(calc "$RPS_A / $RPS_B")
    row 2i "supernode remote search at LOG_LEVEL=info (the default), wrk" \
        "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A"), $PAIR_LINES log lines" "warn $(fmt "$RPS_B") req/s" "$ratio" \
        ">= 0.9 x warn, all correct (pinned)" "$(verdict "$ratio >= 0.9 && $BAD_A == 0")"
}

# The static binary (make dist's, the one the VMs run) against the release one, on the same
# local searches of the same index: allocations per request are what set them apart.
m1s_local_static() {
    [[ -n "${PORT[a]:-}" && -n "${STATIC_BIN:-}" ]] || return 1
    mapfile -t envs < <(super_env 3 1)
    start s supernode "$STATIC_BIN" 27012 "${envs[@]}" || return 1
    if ! timeout 60 "$TOOL" register --addr "$HOST:${PORT[s]}" --seed 1 --nodes 1 --per 15 \
        --port-base 27801 >/dev/null 2>&1 ||
        ! pin s a ||
        ! wrk_pair "local search, static ($STATIC_KIND)" "http://$HOST:${PORT[s]}" "$A_PATHS" \
            "local search, release" "http://$HOST:${PORT[a]}" "$A_PATHS"; then
        unpin a
        stop s
        return 1
    fi
    unpin a
    stop s
    local ratio
    ratio=$(calc "$RPS_A / $RPS_B")
    row 1s "supernode local search, static $STATIC_KIND binary (make dist's), wrk" \
        "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" "release binary $(fmt "$RPS_B") req/s" "$ratio" \
        ">= 0.9 x release (pinned)" "$(verdict "$ratio >= 0.9 && $BAD_A == 0")"
}

m2_remote_wrk() {
    [[ -n "${PORT[a]:-}" && -n "${PORT[b]:-}" ]] || return 1
    local expect="\"location\":\"$B_LOC\""
    wrk_pair "remote search" "http://$HOST:${PORT[a]}" "$B_PATHS" \
        "nginx, same answers" "http://$HOST:$NGINX_PORT" "$B_PATHS" "$expect" || return 1
    local ratio
    ratio=$(calc "$RPS_A / $RPS_B")
    row 2 "supernode remote search (multicast to a 2nd supernode), wrk" \
        "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" "nginx $(fmt "$RPS_B") req/s" "$ratio" \
        ">= 0.25 x nginx, all correct" "$(verdict "$ratio >= 0.25 && $BAD_A == 0")"
}

LOCAL_US=""
REMOTE_US=""
m3_sequential() {
    [[ -n "${PORT[a]:-}" && -n "${PORT[b]:-}" ]] || return 1
    local l=() r=() i out wrong=0
    for ((i = 0; i < RUNS; i++)); do
        out=$(timeout 120 "$TOOL" latency --addr "$HOST:${PORT[a]}" --paths "$A_PATHS" --n 2000 2>&1 | tail -n 1)
        say "local hit: $out"
        l+=("$(kv median_us "$out")")
        wrong=$((wrong + $(kvn wrong "$out") + $(kvn errors "$out")))
        out=$(timeout 120 "$TOOL" latency --addr "$HOST:${PORT[a]}" --paths "$B_PATHS" --n 2000 \
            --contains "\"location\":\"$B_LOC\"" 2>&1 | tail -n 1)
        say "remote hit: $out"
        r+=("$(kv median_us "$out")")
        wrong=$((wrong + $(kvn wrong "$out") + $(kvn errors "$out")))
    done
    LOCAL_US=$(median "${l[@]}")
    REMOTE_US=$(median "${r[@]}")
    is_num "$LOCAL_US" && is_num "$REMOTE_US" && is_num "$PP_US" || return 1
    local bound ratio
    bound=$(calc "$LOCAL_US + 3 * $PP_US")
    ratio=$(calc "$REMOTE_US / $bound")
    row 3 "one remote search, sequential, median" "$(fmt "$REMOTE_US" 1) us" \
        "local hit $(fmt "$LOCAL_US" 1) us + 3 x ping-pong $(fmt "$PP_US" 1) us (two cores) = $(fmt "$bound" 1) us" \
        "$ratio" "<= 1 (local + 3 x ping-pong)" "$(verdict "$ratio <= 1 && $wrong == 0")"
    ((wrong == 0)) || note "3: $wrong wrong answers in the sequential runs"
}

m4_concurrent() {
    [[ -n "${PORT[a]:-}" && -n "${PORT[b]:-}" ]] || return 1
    local out
    out=$(timeout 180 "$TOOL" concurrent --addr "$HOST:${PORT[a]}" --present "$B_PATHS" \
        --absent "$ABSENT" --threads 64 --rounds 50 --location "$B_LOC" 2>"$LOGS/concurrent.err" | tail -n 1)
    say "concurrent: $out"
    local p99 correct n max wrong failed later
    p99=$(kv p99_us "$out")
    max=$(kv max_us "$out")
    correct=$(kv correct "$out")
    wrong=$(kv wrong "$out")
    failed=$(kv failed "$out")
    later=$(kv p99_after_round1_us "$out")
    n=$(kv n "$out")
    is_num "$p99" && is_num "$correct" || return 1
    is_num "$REMOTE_US" || return 1
    local ratio
    ratio=$(calc "$p99 / $REMOTE_US")
    row 4 "64 concurrent remote searches (half present, half absent) x 50" \
        "$correct/$n correct ($wrong wrong, $failed unanswered in 10 s), p99 $(fmt "$p99") us (rounds 2-50: $(fmt "$later") us), max $(fmt "$max") us" \
        "single remote search median $(fmt "$REMOTE_US" 1) us" \
        "$ratio" "100% correct, p99 <= 10 x single" \
        "$(verdict "$correct == $n && $n == 3200 && $ratio <= 10")"
    if [[ -s "$LOGS/concurrent.err" ]]; then
        note "4: $(head -n 1 "$LOGS/concurrent.err")"
    fi
}

m5_negative() {
    [[ -n "${PORT[a]:-}" && -n "${PORT[b]:-}" ]] || return 1
    local v=() i out wrong=0
    for ((i = 0; i < RUNS; i++)); do
        out=$(timeout 120 "$TOOL" latency --addr "$HOST:${PORT[a]}" --paths "$ABSENT" --n 1000 --status 404 2>&1 | tail -n 1)
        say "negative, every peer up: $out"
        v+=("$(kv median_us "$out")")
        wrong=$((wrong + $(kvn wrong "$out") + $(kvn errors "$out")))
    done
    local neg ratio
    neg=$(median "${v[@]}")
    if is_num "$neg" && is_num "$LOCAL_US"; then
        ratio=$(calc "$neg / $LOCAL_US")
        row 5a "negative search, every peer up (GROUP_SIZE=2)" "$(fmt "$neg" 1) us" \
            "local hit $(fmt "$LOCAL_US" 1) us" "$ratio" "<= 2 x local hit" \
            "$(verdict "$ratio <= 2 && $wrong == 0")"
    else
        row 5a "negative search, every peer up (GROUP_SIZE=2)" "-" "-" "-" "<= 2 x local hit" "ERROR"
    fi
    # A third supernode that believes the group has 4 members: a and b answer, the 4th is dead.
    local timeout_ms=2000
    mapfile -t envs < <(super_env 1 4)
    if ! start c supernode "$BIN" 27012 "${envs[@]}" "SEARCH_TIMEOUT_MS=$timeout_ms"; then
        row 5b "negative search, GROUP_SIZE naming a dead peer" "-" "-" "-" "<= time-out + 10%" "ERROR"
        return
    fi
    out=$(timeout 60 "$TOOL" latency --addr "$HOST:${PORT[c]}" --paths "$ABSENT" --n "$RUNS" \
        --warmup 0 --status 404 2>&1 | tail -n 1)
    stop c
    say "negative, dead peer: $out"
    local med max
    med=$(kv median_us "$out")
    max=$(kv max_us "$out")
    if is_num "$med" && is_num "$max"; then
        ratio=$(calc "$med / ($timeout_ms * 1000)")
        row 5b "negative search, GROUP_SIZE=4, 3 up: one dead peer" \
            "$(fmt "$(calc "$med / 1000")") ms (max $(fmt "$(calc "$max / 1000")") ms)" \
            "time-out $timeout_ms ms" "$ratio" "<= 1.1 x time-out" \
            "$(verdict "$ratio <= 1.1 && $(kvn wrong "$out") + $(kvn errors "$out") == 0")"
    else
        row 5b "negative search, GROUP_SIZE=4, 3 up: one dead peer" "-" "-" "-" "<= 1.1 x time-out" "ERROR"
    fi
}

D_PATHS=$LOGS/paths-d-million.txt
m6_m7_m10_million() {
    [[ -n "${PORT[a]:-}" ]] || return 1
    mapfile -t envs < <(super_env 4 1)
    if ! start d supernode "$BIN" 27013 "${envs[@]}"; then
        return 1
    fi
    sleep 1
    local idle loaded out
    idle=$(rss_kb "${PID[d]}")
    say "supernode d idle: VmRSS $idle kB; registering 10 x 100,000 resources"
    out=$(timeout 300 "$TOOL" register --addr "$HOST:${PORT[d]}" --seed 4 --nodes 10 --per 100000 \
        --port-base 27810 --sample 1000 --sample-out "$D_PATHS" 2>"$LOGS/register-million.err" | tail -n 1)
    say "register: $out"
    local med max entries
    med=$(kv median_ms "$out")
    max=$(kv max_ms "$out")
    entries=$(kv entries "$out")
    if ! is_num "$med" || [[ "$entries" != 1000000 ]]; then
        note "registration of 1,000,000 entries failed: $(tail -n 2 "$LOGS/register-million.err")"
        return 1
    fi
    sleep 1
    loaded=$(rss_kb "${PID[d]}")
    say "supernode d with 1,000,000 entries: VmRSS $loaded kB"

    # 10: one registration of 100,000 resources (the median of the ten above).
    local ratio
    ratio=$(calc "$med / 1000")
    row 10 "register one node with 100,000 resources" \
        "$(fmt "$med") ms (median of 10; max $(fmt "$max") ms)" "-" "$ratio" "<= 1 s" \
        "$(verdict "$med <= 1000")"

    # 7: memory per entry above the idle size.
    local per
    per=$(calc "($loaded - $idle) * 1024 / 1000000")
    row 7 "supernode memory for 1,000,000 indexed resources" "$(fmt "$per") B/entry" \
        "idle $(fmt "$(calc "$idle / 1024")") MiB -> $(fmt "$(calc "$loaded / 1024")") MiB" \
        "$(calc "$per / 200")" "<= 200 B/entry" "$(verdict "$per <= 200")"

    # 6: the same wrk command against 1,000,000 entries and against 15.
    if pin d a && wrk_pair "local search, 1,000,000 entries" "http://$HOST:${PORT[d]}" "$D_PATHS" \
        "local search, 15 entries" "http://$HOST:${PORT[a]}" "$A_PATHS"; then
        ratio=$(calc "$RPS_A / $RPS_B")
        row 6 "local search, 1,000,000 indexed resources vs 15" "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" \
            "15 entries: $(rps_text "$RPS_B" "$BAD_B" "$IDLE_B")" "$ratio" ">= 0.9 (pinned)" \
            "$(verdict "$ratio >= 0.9 && $BAD_A + $BAD_B == 0")"
    else
        row 6 "local search, 1,000,000 indexed resources vs 15" "-" "-" "-" ">= 0.9" "ERROR"
    fi
    unpin d a
    name_search_row
    stop d
}

# 14: a name search that matches one resource among 1,000,000 (supernode d, alone in its
# group: no group to ask) against the same kind of search among 15 (supernode n, alone too),
# sequential, medians. The names are the bench tool's: file-<node>-<n>.bin.
name_search_row() {
    local big=$LOGS/paths-names-million.txt small=$LOGS/paths-names-15.txt i out m=() s=() wrong=0
    for ((i = 0; i < 200; i++)); do
        echo "/api/supernode/search?file_name=file-$((i % 10))-$(((i * 7919) % 100000)).bin"
    done >"$big"
    for ((i = 0; i < 15; i++)); do
        echo "/api/supernode/search?file_name=FILE-0-$i.BIN"
    done >"$small"
    mapfile -t envs < <(super_env 9 1)
    start n supernode "$BIN" 27019 "${envs[@]}" || return 1
    if ! timeout 60 "$TOOL" register --addr "$HOST:${PORT[n]}" --seed 1 --nodes 1 --per 15 \
        --port-base 27831 >/dev/null 2>&1; then
        stop n
        return 1
    fi
    for ((i = 0; i < RUNS; i++)); do
        out=$(timeout 120 "$TOOL" latency --addr "$HOST:${PORT[d]}" --paths "$big" --n 300 \
            --contains '"name":"file-' 2>&1 | tail -n 1)
        say "name search, 1,000,000 entries: $out"
        m+=("$(kv median_us "$out")")
        wrong=$((wrong + $(kvn wrong "$out") + $(kvn errors "$out")))
        out=$(timeout 120 "$TOOL" latency --addr "$HOST:${PORT[n]}" --paths "$small" --n 300 \
            --contains '"name":"file-' 2>&1 | tail -n 1)
        say "name search, 15 entries: $out"
        s+=("$(kv median_us "$out")")
        wrong=$((wrong + $(kvn wrong "$out") + $(kvn errors "$out")))
    done
    stop n
    local mm sm
    mm=$(median "${m[@]}")
    sm=$(median "${s[@]}")
    is_num "$mm" && is_num "$sm" || return 1
    row 14 "name search matching 1 of 1,000,000 indexed resources, sequential, median" \
        "$(fmt "$(calc "$mm / 1000")" 2) ms" "15 entries: $(fmt "$(calc "$sm / 1000")" 2) ms" \
        "$(calc "$mm / 5000")" "< 5 ms" "$(verdict "$mm < 5000 && $wrong == 0")"
}

# Supernode h: where the real nodes register (its own group, alone in it).
start_hub() {
    [[ -n "${PORT[h]:-}" ]] && kill -0 "${PID[h]}" 2>/dev/null && return 0
    mapfile -t envs < <(super_env 5 1)
    start h supernode "$BIN" 27014 "${envs[@]}"
}

# node_env DIR: the settings of a real node registering with h.
node_env() {
    printf '%s\n' "SUPERNODE_ENDPOINT=http://$HOST:${PORT[h]}/api/supernode" "RESOURCE_PATH=$1" \
        "LOG_LEVEL=info" "HEARTBEAT_MS=5000"
}

m8_startup() {
    start_hub || return 1
    local dir=$DATA/gib files=()
    mapfile -t files < <(find "$dir" -name '*.bin' | sort)
    ((${#files[@]} == 256)) || return 1
    # Warm: both read from the page cache.
    cat "${files[@]}" >/dev/null
    local o=() n=() i out
    mapfile -t envs < <(node_env "$dir")
    for ((i = 0; i < RUNS; i++)); do
        out=$(timeout 120 "$TOOL" timecmd -- openssl dgst -sha256 "${files[@]}" 2>&1 | tail -n 1)
        say "openssl dgst -sha256, 256 files: $out"
        o+=("$(kv ms "$out")")
        out=$(env LHOST="$HOST" LPORT=0 "${envs[@]}" timeout 120 "$TOOL" startup --log "$LOGS/node-gib-$i.log" \
            --deadline-s 90 -- "$BIN" node 2>&1 | tail -n 1)
        say "node start-up to registered: $out"
        n+=("$(kv ms "$out")")
    done
    local om nm ratio
    om=$(median "${o[@]}")
    nm=$(median "${n[@]}")
    is_num "$om" && is_num "$nm" || return 1
    ratio=$(calc "$nm / $om")
    row 8 "node start-up over 1 GiB in 256 files, start to registered" "$(fmt "$nm") ms" \
        "openssl dgst -sha256 $(fmt "$om") ms" "$ratio" "<= 0.75 x openssl" "$(verdict "$ratio <= 0.75")"
}

# A 1 GiB file downloaded with curl from a node (written from a mapping of the file, 1 MiB a
# call, the file looked at again before the last piece) and from nginx (sendfile), whole and
# its second half as a range, interleaved; medians of curl's own speed over DL_RUNS. Both
# servers (every nginx worker too) on core 0 and curl on core 1: unpinned, a download moves by
# 20-40% with whether the scheduler puts curl on the server's core or the other one.
DL_SPEED=0
DL_BAD=0
DL_RUNS=7
curl_speed() {   # URL [RANGE]
    local out
    out=$("${WRK_PIN[@]}" curl -s --noproxy '*' -o /dev/null ${2:+-r "$2"} -w '%{http_code} %{speed_download}' "$1")
    case $out in
        "200 "* | "206 "*) DL_SPEED=${out#* } ;;
        *) DL_SPEED=0; DL_BAD=$((DL_BAD + 1)) ;;
    esac
}
m13_download() {
    [[ -n "${PORT[nginx]:-}${PID[nginx]:-}" ]] || return 1
    start_hub || return 1
    local dir=$DATA/onegib file id
    make_files "$dir" 1 $((1 << 30)) 13 || return 1
    file=$(find "$dir" -name '*.bin' | head -n 1)
    [[ -n $file ]] || return 1
    ln -f "$file" "$DATA/nginx/www/onegib.bin" 2>/dev/null || cp "$file" "$DATA/nginx/www/onegib.bin"
    cat "$file" >/dev/null
    mapfile -t envs < <(node_env "$dir")
    start dl node "$BIN" 27030 "${envs[@]}" || return 1
    if ! wait_log dl 'registered' 120; then
        stop dl
        return 1
    fi
    id=$(curl -s --noproxy '*' "http://$HOST:${PORT[dl]}/api/node/resources" | grep -o '[0-9a-f]\{64\}' | head -n 1)
    local url="http://$HOST:${PORT[dl]}/api/node/resources/$id/content" ref="http://$HOST:$NGINX_PORT/onegib.bin"
    local half=$((1 << 29)) kind range i a b workers
    workers=$(ps -o pid= --ppid "${PID[nginx]}" | tr -d ' ')
    if (($(nproc) >= 2)); then
        pin dl || { stop dl; return 1; }
        for i in $workers; do taskset -p -c 0 "$i" >/dev/null 2>&1; done
    fi
    for kind in whole range; do
        range=""
        [[ $kind == range ]] && range="$half-"
        a=()
        b=()
        DL_BAD=0
        for ((i = 0; i < DL_RUNS; i++)); do
            curl_speed "$url" "$range"
            a+=("$DL_SPEED")
            curl_speed "$ref" "$range"
            b+=("$DL_SPEED")
            say "download $kind: node $(calc "${a[-1]} / 1000000") MB/s, nginx $(calc "${b[-1]} / 1000000") MB/s"
        done
        local sa sb ratio
        sa=$(median "${a[@]}")
        sb=$(median "${b[@]}")
        ratio=$(calc "$sa / $sb")
        if [[ $kind == whole ]]; then
            row 13 "download of a 1 GiB file from a node, curl" \
                "$(fmt "$(calc "$sa / 1000000")") MB/s" "nginx (sendfile) $(fmt "$(calc "$sb / 1000000")") MB/s" \
                "$ratio" ">= 1.0 x nginx" "$(verdict "$ratio >= 1.0 && $DL_BAD == 0")"
        else
            row 13r "its second half as a byte range (206), curl" \
                "$(fmt "$(calc "$sa / 1000000")") MB/s" "nginx (sendfile) $(fmt "$(calc "$sb / 1000000")") MB/s" \
                "$ratio" ">= 1.0 x nginx" "$(verdict "$ratio >= 1.0 && $DL_BAD == 0")"
        fi
    done
    for i in $workers; do taskset -p -c "0-$(($(nproc) - 1))" "$i" >/dev/null 2>&1; done
    unpin dl
    stop dl
}

m9_listing() {
    start_hub || return 1
    mapfile -t envs < <(node_env "$DATA/10k")
    start n10k node "$BIN" 27020 "${envs[@]}" || return 1
    wait_log n10k ' registered .* with ' 60 || { say "node n10k did not register"; return 1; }
    echo /api/node/resources >"$LOGS/paths-listing.txt"
    timeout 60 "$TOOL" mirror --addr "$HOST:${PORT[n10k]}" --paths "$LOGS/paths-listing.txt" \
        --root "$DATA/nginx/www" >/dev/null || return 1
    local size
    size=$(wc -c <"$DATA/nginx/www/api/node/resources")
    wrk_pair "node listing, 10,000 resources" "http://$HOST:${PORT[n10k]}/api/node/resources" "" \
        "nginx, same listing" "http://$HOST:$NGINX_PORT/api/node/resources" "" || return 1
    stop n10k
    row 9 "listing a node of 10,000 resources ($(fmt "$size") bytes), wrk" "$(rps_text "$RPS_A" "$BAD_A" "$IDLE_A")" \
        "nginx $(fmt "$RPS_B") req/s; seed 109 req/s" "$(calc "$RPS_A / 109") x seed" \
        ">= 2,200 req/s (20 x seed)" "$(verdict "$RPS_A >= 2200 && $BAD_A == 0")"
}

m11_liveness() {
    # The farm registers its 1,000 nodes from 127.0.0.1: exactly MAX_NODES_PER_HOST's default,
    # which is taken (raise the key here if the farm grows).
    local -a envs=("MULTICAST_LOCATION=239.77.1.6:27106" "MULTICAST_GROUP_SIZE=1"
        "MULTICAST_INTERFACE=$HOST" "LIVENESS_PERIOD_MS=5000" "LIVENESS_MISSES=2"
        "HEALTH_TIMEOUT_MS=2000" "LOG_LEVEL=debug")
    start f supernode "$BIN" 27015 "${envs[@]}" || return 1
    local out
    out=$(timeout 90 "$TOOL" farm --addr "$HOST:${PORT[f]}" --live 900 --hanging 100 \
        --deadline-s 45 --out "$LOGS/farm" 2>"$LOGS/farm.err" | tail -n 1)
    stop f
    say "farm: $out"
    local line
    while IFS= read -r line; do
        say "  $line"
    done <"$LOGS/farm.err"
    local log=$LOGS/f.log
    local removed_lines missed_live missed_hanging removed_live
    removed_lines=$(grep -c 'liveness: removed' "$log")
    missed_live=$(grep 'missed a health check' "$log" | grep -cF -f <(sed 's/.*/liveness: & missed/' "$LOGS/farm/live.txt"))
    missed_hanging=$(grep 'missed a health check' "$log" | grep -cF -f <(sed 's/.*/liveness: & missed/' "$LOGS/farm/hanging.txt"))
    removed_live=$(grep 'liveness: removed' "$log" | grep -cF -f <(sed 's/.*/liveness: removed & /' "$LOGS/farm/live.txt"))
    local span removed cmin cmax lost twice after
    span=$(kv max_sweep_span_ms "$out")
    removed=$(kv removed "$out")
    after=$(kv removed_after_s "$out")
    cmin=$(kv hanging_checks_at_removal_min "$out")
    cmax=$(kv hanging_checks_at_removal_max "$out")
    lost=$(kv live_lost "$out")
    twice=$(kv live_checked_twice "$out")
    is_num "$span" || return 1
    local ok
    ok=$(verdict "$span <= 5000 && \"$twice\" == \"true\" && $lost == 0 && $missed_live == 0 && \
        \"$removed\" == \"true\" && $cmin == 2 && $cmax == 2 && $removed_lines == 100 && $removed_live == 0")
    row 11 "liveness sweep, 1,000 nodes of which 100 hang" \
        "live 900 checked within $(fmt "$span") ms per sweep (0 lost: $([[ $lost == 0 && $missed_live == 0 ]] && echo yes || echo no)); hanging removed after $cmin-$cmax sweeps, $(fmt "$after" 1) s after registering ($removed_lines removed, $missed_hanging misses logged)" \
        "period 5,000 ms" "$(calc "$span / 5000")" "live 900 within one 5 s period; the 100 removed after 2 sweeps" "$ok"
}

# idle_row ROLE "KIND KB"...: one row of item 12 from the VmRSS of each build.
idle_row() {
    local role=$1 entry worst=0 text=""
    shift
    if (($# == 0)); then
        row 12 "idle resident memory, $role (VmRSS)" "-" "-" "-" "<= 8 MB" "ERROR"
        return
    fi
    for entry in "$@"; do
        text+="${text:+, }${entry%% *} $(fmt "$(calc "${entry##* } * 1024 / 1000000")" 1) MB"
        ((${entry##* } > worst)) && worst=${entry##* }
    done
    row 12 "idle resident memory, $role (VmRSS)" "$text" "-" \
        "$(calc "$worst * 1024 / 8000000")" "<= 8 MB" "$(verdict "$worst * 1024 <= 8000000")"
}

m12_idle() {
    start_hub || return 1
    local kind bin port rss sup=() nod=() size
    for kind in release static; do
        bin=$BIN
        port=27016
        [[ $kind == static ]] && bin=${STATIC_BIN:-} && port=27018
        [[ -x "$bin" ]] || continue
        mapfile -t envs < <(super_env 7 2)
        if start "idle-super-$kind" supernode "$bin" "$port" "${envs[@]}"; then
            sleep 1
            rss=$(rss_kb "${PID[idle-super-$kind]}")
            is_num "$rss" && sup+=("$kind $rss")
            stop "idle-super-$kind"
        fi
        mapfile -t envs < <(node_env "$DATA/small")
        if start "idle-node-$kind" node "$bin" "$((port + 1))" "${envs[@]}" &&
            wait_log "idle-node-$kind" ' registered .* with ' 30; then
            sleep 1
            rss=$(rss_kb "${PID[idle-node-$kind]}")
            is_num "$rss" && nod+=("$kind $rss")
        fi
        stop "idle-node-$kind"
    done
    idle_row supernode "${sup[@]}"
    idle_row node "${nod[@]}"
    if [[ -x "${STATIC_BIN:-}" ]]; then
        size=$(wc -c <"$STATIC_BIN")
        row 12 "static binary size ($STATIC_KIND)" "$(fmt "$(calc "$size / 1000000")" 2) MB ($(fmt "$size") bytes)" \
            "-" "$(calc "$size / 6000000")" "<= 6 MB" "$(verdict "$size <= 6000000")"
    fi
}

# ---------------------------------------------------------------------------------------------
# Scale and summaries (15, 16): groups of 2, 8 and 32 supernodes, each one process on
# 127.0.0.1 in a multicast group of its own (239.77.1.11-14), all up at once so that their runs
# interleave. In each, supernode 0 is the asker and supernode 1 holds one node's one file.

SCALE_ABSENT=$LOGS/paths-scale-absent.txt
SCALE_PRESENT=$LOGS/paths-scale-present.txt
SCALE_LOC=127.0.0.1:27850
# prefix: supernodes, group octet, first HTTP port, settings
SCALE_GROUPS=(g2 g8 g32 n32)
declare -A GROUP_N=()
declare -A SCALE_SPEC=([g2]="2 11 27400" [g8]="8 12 27410" [g32]="32 13 27420" [n32]="32 14 27460")

# start_group PREFIX [KEY=VALUE ...]: supernodes PREFIX-0 .. PREFIX-(n-1) as SCALE_SPEC says,
# within 60 s for the whole group (each start waits for its port); stopped again if one fails.
start_group() {
    local prefix=$1 size octet base i deadline=$((SECONDS + 60))
    local -a envs
    shift
    read -r size octet base <<<"${SCALE_SPEC[$prefix]}"
    mapfile -t envs < <(super_env "$octet" "$size")
    GROUP_N[$prefix]=$size
    for ((i = 0; i < size; i++)); do
        if ((SECONDS > deadline)) || ! start "$prefix-$i" supernode "$BIN" $((base + i)) "${envs[@]}" "$@"; then
            say "group $prefix: supernode $i of $size did not start in time"
            stop_group "$prefix"
            return 1
        fi
    done
}

stop_group() {   # PREFIX
    local i names=()
    for ((i = 0; i < ${GROUP_N[$1]:-0}; i++)); do
        names+=("$1-$i")
    done
    stop "${names[@]}"
    unset "GROUP_N[$1]"
}

# group_addrs PREFIX [SKIP...]: host:port of the group's supernodes but those numbered SKIP,
# comma-separated.
group_addrs() {
    local prefix=$1 i out=""
    shift
    for ((i = 0; i < ${GROUP_N[$prefix]:-0}; i++)); do
        [[ " $* " == *" $i "* ]] && continue
        out+="${out:+,}$HOST:${PORT[$prefix-$i]}"
    done
    echo "$out"
}

# counter ADDRS METRIC [LABEL]: "v1,v2,..." of one metric (summed over its series with LABEL).
counter() {
    timeout 30 "$TOOL" counters --addrs "$1" --metric "$2" ${3:+--label "$3"} 2>/dev/null | sed -n 's/^values=//p'
}

# scale_ready PREFIX DIGESTS: registers the node at PREFIX-1 and waits until the asker (PREFIX-0)
# hears every other supernode and, with summaries (DIGESTS=yes), holds a fresh summary of each,
# the holder's with its file.
scale_ready() {
    local prefix=$1 size=${GROUP_N[$1]} out held=()
    timeout 60 "$TOOL" register --addr "$HOST:${PORT[$prefix-1]}" --seed 15 --nodes 1 --per 1 \
        --port-base "${SCALE_LOC##*:}" --sample 1 --sample-out "$SCALE_PRESENT" >/dev/null 2>&1 || return 1
    if [[ $2 == yes ]]; then
        out=$(timeout 30 "$TOOL" digest --addr "$HOST:${PORT[$prefix-1]}" 2>&1)
        held=(--fresh $((size - 1)) --held "$(kv epoch "$out")/$(kv version "$out")")
    fi
    out=$(timeout 70 "$TOOL" ready --addrs "$HOST:${PORT[$prefix-0]}" --peers $((size - 1)) "${held[@]}" \
        --deadline-s 60 2>/dev/null | tail -n 1)
    say "group $prefix: the asker is ready: $out"
    [[ $(kv ok "$out") == true ]]
}

# scale_run PREFIX neg|pos: one wrk run at the asker, absent ids (every answer a 404, from the
# asker's own count of its answers by status) or the holder's file (every answer checked by the
# Lua script: 200 and the holder's location), with the datagrams every other supernode received
# meanwhile. Sets WRK_BAD (for neg: socket errors, answers of another status than 404, and
# fewer 404s than wrk's answers), and SR_MEAN and SR_MAX: datagrams per search at the
# supernodes that do not hold the id (all but the asker; for pos, not the holder either), less
# their idle rate (BG_RATE), mean and most.
declare -A BG_RATE=()
SR_MEAN=""
SR_MAX=""
scale_run() {
    local prefix=$1 kind=$2 peers before after t0 t1 url skip=-1 ok=0
    peers=$(group_addrs "$prefix" 0)
    url="http://$HOST:${PORT[$prefix-0]}"
    local route='route="/api/supernode/search/{id}"' all0 all1 nf0 nf1
    all0=$(counter "${url#http://}" superpeer_http_requests_total "$route")
    nf0=$(counter "${url#http://}" superpeer_http_requests_total "$route,status=\"404\"")
    before=$(counter "$peers" superpeer_datagrams_received_total)
    t0=$EPOCHREALTIME
    if [[ $kind == neg ]]; then
        wrk_run "$prefix, negative search" "$url" "$SCALE_ABSENT" "" 404 || ok=1
        all1=$(counter "${url#http://}" superpeer_http_requests_total "$route")
        nf1=$(counter "${url#http://}" superpeer_http_requests_total "$route,status=\"404\"")
        local others missing
        others=$(calc "($all1 - $all0) - ($nf1 - $nf0)")
        missing=$(calc "$WRK_REQS - ($nf1 - $nf0)")
        if ! is_num "$others" || ! is_real "$missing"; then
            others=$WRK_REQS
            missing=0
        fi
        ((${missing%.*} > 0)) || missing=0
        WRK_BAD=$((WRK_BAD + others + missing))
        say "$prefix negative: the asker answered $(calc "$nf1 - $nf0") searches 404 and $others otherwise"
    else
        skip=0   # the holder is the first of the peers
        wrk_run "$prefix, positive search" "$url" "$SCALE_PRESENT" "\"location\":\"$SCALE_LOC\"" || ok=1
    fi
    t1=$EPOCHREALTIME
    after=$(counter "$peers" superpeer_datagrams_received_total)
    local stats
    stats=$(awk -v b="$before" -v a="$after" -v r="${BG_RATE[$prefix]}" -v w="$(calc "$t1 - $t0")" \
        -v n="$WRK_REQS" -v skip="$skip" 'BEGIN {
            k = split(b, B, ","); split(a, A, ","); split(r, R, ",")
            if (n <= 0 || k == 0) exit 1
            for (i = 1; i <= k; i++) {
                if (i - 1 == skip) continue
                if (B[i] < 0 || A[i] < 0) exit 1
                d = (A[i] - B[i] - R[i] * w) / n; sum += d; c++
                if (c == 1 || d > max) max = d
            }
            if (c == 0) { print "- -"; exit }
            printf "%.6f %.6f\n", sum / c, max }')
    read -r SR_MEAN SR_MAX <<<"${stats:-x x}"
    say "$prefix $kind: $WRK_REQS searches; datagrams per search at each supernode not holding the id: mean $SR_MEAN, most $SR_MAX"
    return "$ok"
}

stop_scale() {
    local p
    for p in "${SCALE_GROUPS[@]}"; do
        stop_group "$p"
    done
}

is_real() {   # a number, maybe negative (a count less its background)
    [[ "${1:-}" =~ ^-?[0-9]+([.][0-9]+)?$ ]]
}

fmt0() {   # a count per search, 4 decimals (a tiny negative one, less than its background: 0)
    fmt "$(awk -v x="$1" 'BEGIN {print (x < 0.00005 && x > -0.00005) ? 0 : x}')" 4
}

medof() {   # "v1 v2 ...": their median
    local -a v
    read -ra v <<<"$1"
    median "${v[@]}"
}

m15_scale() {
    "$TOOL" ids --seed 98 --n 1000 >"$SCALE_ABSENT" || return 1
    local p t0=$SECONDS
    if ! start_group g2 || ! start_group g8 || ! start_group g32 || ! start_group n32 INDEX_DIGESTS=false; then
        stop_scale
        return 1
    fi
    say "scale: 74 supernodes started in $((SECONDS - t0)) s"
    if ! scale_ready g2 yes || ! scale_ready g8 yes || ! scale_ready g32 yes || ! scale_ready n32 no; then
        stop_scale
        return 1
    fi
    local out
    out=$(timeout 10 "$TOOL" ready --addrs "$(group_addrs g32)" --fresh 31 --deadline-s 0 2>/dev/null | tail -n 1)
    say "group g32, $((SECONDS - t0)) s after the first start: every supernode with 31 fresh summaries? $out"

    # The idle rate of datagrams at each supernode (pings, their answers, announcements).
    local -A b0=() w0=()
    for p in "${SCALE_GROUPS[@]}"; do
        b0[$p]=$(counter "$(group_addrs "$p" 0)" superpeer_datagrams_received_total)
        w0[$p]=$EPOCHREALTIME
    done
    sleep "$WRK_SECONDS"
    for p in "${SCALE_GROUPS[@]}"; do
        BG_RATE[$p]=$(awk -v b="${b0[$p]}" -v a="$(counter "$(group_addrs "$p" 0)" superpeer_datagrams_received_total)" \
            -v w="$(calc "$EPOCHREALTIME - ${w0[$p]}")" 'BEGIN {
                k = split(b, B, ","); split(a, A, ","); s = ""
                for (i = 1; i <= k; i++) s = s (i > 1 ? "," : "") sprintf("%.2f", (A[i] - B[i]) / w)
                print s }')
        say "group $p: idle datagrams per second at each supernode but the asker: ${BG_RATE[$p]}"
    done
    out=$(timeout 10 "$TOOL" ready --addrs "$(group_addrs g32)" --fresh 31 --deadline-s 0 2>/dev/null | tail -n 1)
    say "group g32, $((SECONDS - t0)) s after the first start: every supernode with 31 fresh summaries? $out"

    local -A rps=() bad=() idle=() dmean=() dmax=()
    local i kind k
    for ((i = 0; i < RUNS; i++)); do
        for p in "${SCALE_GROUPS[@]}"; do
            for kind in neg pos; do
                k=$p-$kind
                scale_run "$p" "$kind" && rps[$k]+=" $WRK_RPS"
                bad[$k]=$((${bad[$k]:-0} + WRK_BAD))
                ((WRK_IDLE > ${idle[$k]:-0})) && idle[$k]=$WRK_IDLE
                is_real "$SR_MEAN" && dmean[$k]+=" $SR_MEAN"
                is_real "$SR_MAX" && dmax[$k]+=" $SR_MAX"
            done
        done
    done
    stop_group g2
    stop_group g8
    stop_group n32

    local -A mr=() dm=() dx=()
    for k in "${!bad[@]}"; do
        mr[$k]=$(medof "${rps[$k]:-}")
        dm[$k]=$(medof "${dmean[$k]:-}")
        dx[$k]=$(medof "${dmax[$k]:-}")
    done
    local ratio ratio2
    if is_num "${mr[g32-neg]:-}" && is_num "${mr[g2-neg]:-}"; then
        ratio=$(calc "${mr[g32-neg]:-0} / ${mr[g2-neg]:-0}")
        row 15a "negative search (1,000 absent ids), 32 supernodes with summaries, wrk at one of them" \
            "$(rps_text "${mr[g32-neg]:-0}" "${bad[g32-neg]:-0}" "${idle[g32-neg]:-0}"); 8: $(rps_text "${mr[g8-neg]:-0}" "${bad[g8-neg]:-0}" "${idle[g8-neg]:-0}")" \
            "2 supernodes: $(rps_text "${mr[g2-neg]:-0}" "${bad[g2-neg]:-0}" "${idle[g2-neg]:-0}")" "$ratio" \
            ">= 0.5 x 2 supernodes, all 404" "$(verdict "$ratio >= 0.5 && ${bad[g32-neg]:-0} + ${bad[g2-neg]:-0} == 0")"
    fi
    if is_num "${mr[g32-pos]:-}" && is_num "${mr[g2-pos]:-}"; then
        ratio=$(calc "${mr[g32-pos]:-0} / ${mr[g2-pos]:-0}")
        row 15b "positive remote search (a file one other supernode holds), 32 supernodes with summaries, wrk" \
            "$(rps_text "${mr[g32-pos]:-0}" "${bad[g32-pos]:-0}" "${idle[g32-pos]:-0}"); 8: $(rps_text "${mr[g8-pos]:-0}" "${bad[g8-pos]:-0}" "${idle[g8-pos]:-0}")" \
            "2 supernodes: $(rps_text "${mr[g2-pos]:-0}" "${bad[g2-pos]:-0}" "${idle[g2-pos]:-0}")" "$ratio" \
            ">= 0.5 x 2 supernodes, all correct" "$(verdict "$ratio >= 0.5 && ${bad[g32-pos]:-0} + ${bad[g2-pos]:-0} == 0")"
    fi
    if is_real "${dx[g32-neg]:-}" && is_real "${dx[g32-pos]:-}" && is_num "${dm[n32-neg]:-}"; then
        local worst
        # The background subtracted can leave a hair below zero: none is none.
        worst=$(printf '%s\n' 0 "${dx[g32-neg]:-0}" "${dx[g32-pos]:-0}" "${dx[g8-neg]:-0}" "${dx[g8-pos]:-0}" | sort -g | tail -n 1)
        ratio=$(calc "$worst / ${dm[n32-neg]:-0}")
        row 15c "datagrams a supernode whose summary cannot hold the id receives per search (32; background subtracted)" \
            "absent ids: $(fmt0 "${dm[g32-neg]:-0}") (most at one: $(fmt0 "${dx[g32-neg]:-0}")); the file: $(fmt0 "${dm[g32-pos]:-0}") (most $(fmt0 "${dx[g32-pos]:-0}")); 8 supernodes: $(fmt0 "${dm[g8-neg]:-0}"), $(fmt0 "${dm[g8-pos]:-0}")" \
            "INDEX_DIGESTS=false: absent ids $(fmt "${dm[n32-neg]:-0}" 3), the file $(fmt "${dm[n32-pos]:-0}" 3) per search" \
            "$ratio" "~0: <= 0.01 per search at every such supernode (8 and 32)" "$(verdict "$worst <= 0.01")"
    fi
    if is_num "${mr[n32-neg]:-}" && is_num "${mr[n32-pos]:-}" && is_num "${mr[g32-neg]:-}" && is_num "${mr[g32-pos]:-}"; then
        ratio=$(calc "${mr[g32-neg]:-0} / ${mr[n32-neg]:-0}")
        ratio2=$(calc "${mr[g32-pos]:-0} / ${mr[n32-pos]:-0}")
        row 15d "32 supernodes, summaries against none (INDEX_DIGESTS=false: every peer asked, answers by unicast)" \
            "with: absent ids $(fmt "${mr[g32-neg]:-0}") req/s, the file $(fmt "${mr[g32-pos]:-0}") req/s" \
            "without: absent ids $(rps_text "${mr[n32-neg]:-0}" "${bad[n32-neg]:-0}" "${idle[n32-neg]:-0}"), the file $(rps_text "${mr[n32-pos]:-0}" "${bad[n32-pos]:-0}" "${idle[n32-pos]:-0}")" \
            "$ratio (the file: $ratio2)" ">= 1 x without, both" \
            "$(verdict "$ratio >= 1 && $ratio2 >= 1 && ${bad[n32-neg]:-0} + ${bad[n32-pos]:-0} == 0")"
    fi
}

# 16: the summary of 1,000,000 ids (the registration of rows 6, 7 and 10, here at g32-2, in the
# 32-supernode group of row 15, started anew when 15 did not run): its size per id, and what
# one more registration of ten ids costs it to tell the 31 others.
m16_summaries() {
    if [[ -z "${GROUP_N[g32]:-}" ]]; then
        start_group g32 || return 1
    fi
    local addr=$HOST:${PORT[g32-2]} others out
    others=$(group_addrs g32 2)
    say "registering 10 x 100,000 resources at g32-2"
    out=$(timeout 300 "$TOOL" register --addr "$addr" --seed 4 --nodes 10 --per 100000 \
        --port-base 27810 2>"$LOGS/register-million-g32.err" | tail -n 1)
    say "register: $out"
    if [[ $(kv entries "$out") != 1000000 ]]; then
        note "16: the registration of 1,000,000 entries failed: $(tail -n 2 "$LOGS/register-million-g32.err")"
        return 1
    fi
    local whole epoch version wbytes bits hashes whole_http per
    whole=$(timeout 30 "$TOOL" digest --addr "$addr" 2>&1)
    say "the whole summary: $whole"
    epoch=$(kv epoch "$whole")
    version=$(kv version "$whole")
    wbytes=$(kv bytes "$whole")
    bits=$(kv bits "$whole")
    hashes=$(kv hashes "$whole")
    is_num "$wbytes" && is_num "$version" || return 1
    # Its answer as it goes over the connection: head and body.
    whole_http=$(curl -s --noproxy '*' -o /dev/null -w '%{size_header} %{size_download}' \
        "http://$addr/api/supernode/digest" | awk '{print $1 + $2}')
    per=$(calc "$wbytes * 8 / 1000000")
    row 16a "index summary of 1,000,000 ids (GET /api/supernode/digest, whole), bits per id" \
        "$(fmt "$per" 1) bits/id ($(fmt "$wbytes") bytes: a filter of $(fmt "$bits") bits, $hashes hashes)" \
        "the ids themselves: 256 bits/id" "$(calc "$per / 16")" "<= 16 bits/id" "$(verdict "$per <= 16")"

    # Every other supernode holds this version, fresh; then one node with ten new ids.
    out=$(timeout 90 "$TOOL" ready --addrs "$others" --held "$epoch/$version" --deadline-s 60 2>/dev/null | tail -n 1)
    say "the 31 others hold the summary of 1,000,000 ids: $out"
    if [[ $(kv ok "$out") != true ]]; then
        row 16b "bytes sent per registration (10 new ids), 32 supernodes, 1,000,000 ids" "-" "-" "-" "<= 0.01 x whole refetch" "ERROR (the 31 others never all held its summary: $out)"
        return 0
    fi
    # What it sends from now on: the answers to the digest route (their count, from its
    # metrics, times the size of the delta they fetch, head included, measured after) and
    # its announcements (their count from its metrics; each one as it came on the group, from
    # a listener there, timed so that only those in the window count).
    local next=$epoch/$((version + 10)) lpid c0 c1 a0 a1 t0 t1 took
    "$TOOL" announcements --group 239.77.1.13 --port 27113 --contains ";27;$addr/" \
        --ms 30000 >"$LOGS/announcements.txt" 2>&1 &
    lpid=$!
    RUNNING[$lpid]=announcements
    sleep 0.3
    t0=$EPOCHREALTIME
    c0=$(counter "$addr" superpeer_http_requests_total 'route="/api/supernode/digest"')
    a0=$(counter "$addr" superpeer_datagrams_sent_total 'kind="digest"')
    local registered=0
    timeout 30 "$TOOL" register --addr "$addr" --seed 16 --nodes 1 --per 10 --port-base 27860 >/dev/null 2>&1 ||
        registered=1
    out=$(timeout 40 "$TOOL" ready --addrs "$others" --held "$next" --deadline-s 20 2>/dev/null | tail -n 1)
    took=$(calc "($EPOCHREALTIME - $t0) * 1000")
    c1=$(counter "$addr" superpeer_http_requests_total 'route="/api/supernode/digest"')
    a1=$(counter "$addr" superpeer_datagrams_sent_total 'kind="digest"')
    t1=$EPOCHREALTIME
    sleep 0.2
    stop_pids "$lpid"
    ((registered == 0)) || return 1
    local ann_n ann_bytes
    read -r ann_n ann_bytes < <(awk -v t0="$t0" -v t1="$t1" '{ split($1, a, "=")
        if ($1 ~ /^at=/ && a[2] >= t0 && a[2] <= t1) { n++; split($2, b, "="); s += b[2] } }
        END { print n + 0, s + 0 }' "$LOGS/announcements.txt")
    say "after the registration: $out ($(fmt "$took") ms); digest requests $c0 -> $c1, announcements sent $a0 -> $a1, seen on the group in the window: $ann_n ($ann_bytes bytes)"
    grep '^at=' "$LOGS/announcements.txt" | while IFS= read -r line; do say "  on the group: $line"; done
    local delta delta_http fetches sent ref
    delta=$(timeout 30 "$TOOL" digest --addr "$addr" --epoch "$epoch" --since "$version" 2>&1)
    delta_http=$(curl -s --noproxy '*' -o /dev/null -w '%{size_header} %{size_download}' \
        "http://$addr/api/supernode/digest?epoch=$epoch&since=$version" | awk '{print $1 + $2}')
    say "the delta they fetched: $delta ($delta_http bytes with the head); the whole: $whole_http bytes with the head"
    fetches=$(calc "$c1 - $c0")
    if [[ $(kv ok "$out") != true ]] || ! is_num "$fetches" || ! is_num "$delta_http" || ! is_num "$whole_http"; then
        row 16b "bytes sent per registration (10 new ids), 32 supernodes, 1,000,000 ids" "-" "-" "-" "<= 0.01 x whole refetch" "ERROR (see the log)"
        return 0
    fi
    ((ann_n == ${a1%.*} - ${a0%.*})) || note "16b: $((${a1%.*} - ${a0%.*})) announcements counted by the supernode, $ann_n seen on the group"
    sent=$(calc "$fetches * $delta_http + $ann_bytes")
    ref=$(calc "31 * $whole_http")
    local ratio
    ratio=$(calc "$sent / $ref")
    row 16b "bytes a supernode of 1,000,000 ids sends when a node registers 10 new ids, 32 supernodes" \
        "$(fmt "$sent") bytes: $fetches delta fetches x $(fmt "$delta_http") bytes (head included) + $ann_n announcement(s), $ann_bytes bytes; all 31 fresh after $(fmt "$took") ms" \
        "31 whole refetches x $(fmt "$whole_http") bytes = $(fmt "$ref") bytes" "$ratio" \
        "<= 0.01 x whole refetch" "$(verdict "$ratio <= 0.01 && $fetches <= 31")"
}

# ---------------------------------------------------------------------------------------------
# The run

mkdir -p "$LOGS" "$DATA"
rm -rf "$LOGS"/*.log "$LOGS"/*.txt "$LOGS"/*.err "$LOGS/farm"
START_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
say "superpeer benchmarks; logs in ${LOGS#"$ROOT"/}/"

install_tools || say "installing the tools failed (see $LOGS/apt.log)"
for tool in wrk openssl cargo; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool is missing"; exit 1; }
done
NGINX_BIN=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
build || { say "the build failed"; exit 1; }

make_files "$DATA/gib" 256 $((4 << 20)) 8 || say "cannot write the 1 GiB of test files"
make_files "$DATA/10k" 10000 64 9 || say "cannot write the 10,000 test files"
make_files "$DATA/small" 15 1024 10 || say "cannot write the small test folder"

start_nginx || say "nginx is not running: its references are missing"
pingpong || say "the multicast ping-pong failed"
if ! setup_search_pair; then
    say "the search pair (supernodes a and b) did not come up"
fi

measure 1 "supernode local search, wrk keep-alive" m1_local_wrk
measure 1s "supernode local search, static binary" m1s_local_static
measure 2 "supernode remote search, wrk" m2_remote_wrk
measure 2k "supernode remote search, keyed group" m2k_remote_keyed
measure 2i "supernode remote search at LOG_LEVEL=info" m2i_remote_info
measure 3 "one remote search, sequential, median" m3_sequential
measure 4 "64 concurrent remote searches x 50" m4_concurrent
measure 5 "negative searches" m5_negative
measure "6, 7, 10" "1,000,000 indexed resources" m6_m7_m10_million
stop a b
measure 8 "node start-up over 1 GiB in 256 files" m8_startup
measure 9 "listing a node of 10,000 resources" m9_listing
measure 13 "download of a 1 GiB file" m13_download
stop nginx
measure 11 "liveness sweep over 1,000 nodes" m11_liveness
measure 12 "idle memory and binary size" m12_idle
stop h
measure 15 "2, 8 and 32 supernodes: searches and their datagrams" m15_scale
measure 16 "index summaries of 1,000,000 ids" m16_summaries
stop_scale

# ---------------------------------------------------------------------------------------------
# The table, sorted by item number

ELAPSED=$SECONDS
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
SHA_NI=$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)
{
    echo "# superpeer benchmarks"
    echo
    echo "Made by \`bench/run.sh\` (\`make bench\`) on $START_DATE, in $ELAPSED s."
    echo
    echo "- machine: $(nproc) cores, ${CPU:-unknown CPU} (SHA-NI: $SHA_NI), $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) of memory"
    echo "- kernel: $(uname -srm)"
    echo "- superpeer: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes')"
    echo "- wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}'): \`wrk ${WRK_ARGS[*]}\`, medians of $RUNS runs, superpeer and its reference interleaved"
    echo "- nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), worker_processes auto, access log off; multicast ping-pong median $(fmt "${PP_US:-0}" 1) us on two cores, $(fmt "${PP_SAME_US:-0}" 1) us on one"
    echo "- everything on 127.0.0.1 while other work may run on the same machine: figures are noisy, ratios less so"
    echo
    echo "| # | measurement | figure | reference (same run) | ratio | target | result |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}" | sort -t'|' -k2,2V -s
    if ((${#NOTES[@]})); then
        echo
        echo "Notes:"
        printf -- '- %s\n' "${NOTES[@]}"
    fi
    echo
    echo "## Every run of this table"
    echo
    echo '```'
    grep -v '^\[ *[0-9]*s\] note: ' "$LOGS/bench.log"
    echo '```'
} >"$RESULTS"
echo
cat "$RESULTS"
echo
say "done in $ELAPSED s: $FAILED item(s) missed their target or failed; table in ${RESULTS#"$ROOT"/}"
if [[ "${BENCH_STRICT:-0}" == 1 ]] && ((FAILED > 0)); then
    exit 1
fi
exit 0
