#!/usr/bin/env bash
# scripts/attack.sh (make attack): slowhttptest's four slow-HTTP attacks (slow headers, slow
# body, range, slow read) against a supernode, a node and nginx (the reference), all in the
# same run, with their availability second by second; then the datagram attacks on the open
# mode (tests/lab/open_mode.rs: reflection, forged summaries, fetch storms, made-up peers, tar
# pits), with their figures.
#
# A LAN of two hosts of its own, made by `sp-bench lan` (the namespace-LAN builder of tools/lan,
# the tests' and make lab's: a bridge in a namespace of its own, each host's veth born inside
# it, attached to nothing of the host's, so no packet can leave the machine): host-1 holds the
# three servers at 192.168.35.10, host-2 the attacker at 192.168.35.11. slowhttptest's own
# probe comes from the attacker's address, which the per-address cap (MAX_CONNECTIONS_PER_IP)
# may rightly refuse; a second probe (sp-bench probe) asks from host-1, a fresh connection
# every 100 ms, and counts a second as available when every answer in it was a 200 within
# 500 ms. Each superpeer row passes when the second probe found it available every second.
#
# Environment: ATTACK_CONNECTIONS (1000), ATTACK_SECONDS (30); CI runs a short version
# (200 connections, 10 s). Root only (namespaces). Installs slowhttptest and nginx when
# missing. Writes the table to bench/attack.md; logs in bench/logs/attack/.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
CONNECTIONS=${ATTACK_CONNECTIONS:-1000}
SECONDS_EACH=${ATTACK_SECONDS:-30}
BIN=$ROOT/target/release/superpeer
PROBE=$ROOT/target/release/sp-bench
OUT=$ROOT/bench/logs/attack
RESULTS=$ROOT/bench/attack.md
# The two hosts' namespaces and addresses, set once sp-bench has made them.
SRV=
ATK=
declare -A PORT=([supernode]=5000 [node]=8000 [nginx]=8080)
PIDS=()

say() { printf '[attack %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    die "needs root, for its network namespaces (sudo make attack)"
fi
need=()
command -v slowhttptest >/dev/null || need+=(slowhttptest)
command -v nginx >/dev/null || need+=(nginx)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    say "installing ${need[*]} (apt-get)"
    bash scripts/apt-install.sh "${need[@]}" || die "cannot install ${need[*]}"
fi

# Called by the trap.
# shellcheck disable=SC2317
cleanup() {
    local pid ns
    # Every process started inside the two namespaces (nginx's workers too), then the rest.
    for ns in $SRV $ATK; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null
        done
    done
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    # The LAN sp-bench made on this shell's behalf, if any (should this shell die first, the
    # next LAN anyone makes deletes it).
    [[ -x $PROBE ]] && "$PROBE" lan down --owner $$
    [[ -n ${WORK:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the release binary and the probe"
cargo build --release --quiet || die "cargo build failed"
cargo build --release --quiet --manifest-path bench/tools/Cargo.toml || die "bench tools failed"

rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/superpeer-attack.XXXXXX)
mkdir -p "$WORK/files" "$WORK/www" "$WORK/nginx"
head -c $((1 << 20)) /dev/urandom >"$WORK/files/one-mebibyte.bin"
cp "$WORK/files/one-mebibyte.bin" "$WORK/www/one-mebibyte.bin"
ID=$(sha256sum "$WORK/files/one-mebibyte.bin" | cut -d' ' -f1)
printf '{"data":"ok","entity":"health"}' >"$WORK/www/probe.json"
# nginx's workers run as nobody.
chmod -R a+rX "$WORK"

# One line a host: number, namespace, address.
hosts=$("$PROBE" lan up --hosts 2 --owner $$) || die "cannot create network namespaces"
{ read -r _ SRV SERVER && read -r _ ATK ATTACKER; } <<<"$hosts" || die "sp-bench lan said: $hosts"
say "a LAN of two hosts: $SRV ($SERVER) the servers, $ATK ($ATTACKER) the attacker"

in_srv() { ip netns exec "$SRV" "$@"; }

start() { # name log command...: runs the command in the server's namespace, in the background
    local name=$1 log=$2
    shift 2
    # Not through in_srv: a function in the background is a subshell, and its PID would not be
    # the server's (ip netns exec and env exec the command, so this one is).
    ip netns exec "$SRV" "$@" >"$log" 2>&1 &
    PIDS+=($!)
    say "started $name (pid $!)"
}

# Everything else at its default: the limits under test are the ones users get.
start supernode "$OUT/supernode.log" env -i LHOST="$SERVER" LPORT="${PORT[supernode]}" \
    LOG_LEVEL=info MULTICAST_LOCATION=239.77.7.1:4777 MULTICAST_GROUP_SIZE=1 \
    "$BIN" supernode
start node "$OUT/node.log" env -i LHOST="$SERVER" LPORT="${PORT[node]}" LOG_LEVEL=info \
    SUPERNODE_ENDPOINT="http://$SERVER:${PORT[supernode]}/api/supernode" \
    RESOURCE_PATH="$WORK/files" "$BIN" node
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen $SERVER:${PORT[nginx]};
        root $WORK/www;
    }
}
EOF
start nginx "$OUT/nginx.log" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"

# What each target is attacked on (a large answer, for slow reads) and probed with.
declare -A ATTACK_PATH=(
    [supernode]=/api/supernode/search/$ID
    [node]=/api/node/resources/$ID/content
    [nginx]=/one-mebibyte.bin
)
declare -A PROBE_PATH=(
    [supernode]=/api/supernode/search/$ID
    [node]=/api/node/health
    [nginx]=/probe.json
)
for target in supernode node nginx; do
    url=http://$SERVER:${PORT[$target]}${PROBE_PATH[$target]}
    ready=0
    for _ in $(seq 100); do
        if [[ $(in_srv curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]]; then
            ready=1
            break
        fi
        sleep 0.1
    done
    ((ready)) || die "$target does not answer $url; see $OUT/$target.log"
done

declare -A MODE_NAME=([H]="slow headers" [B]="slow body" [R]="range" [X]="slow read")
rows=()
failed=0
for mode in H B R X; do
    say "== ${MODE_NAME[$mode]} (-$mode): $CONNECTIONS connections for $SECONDS_EACH s, all three at once"
    waits=()
    for target in supernode node nginx; do
        extra=()
        case $mode in
            B) extra=(-s 100000) ;;
            X) extra=(-k 4 -n 1 -w 16 -y 64 -z 32) ;;
        esac
        ip netns exec "$ATK" slowhttptest "-$mode" -c "$CONNECTIONS" -r 500 -i 1 \
            -l "$SECONDS_EACH" -p 3 -g -o "$OUT/$target-$mode" "${extra[@]}" \
            -u "http://$SERVER:${PORT[$target]}${ATTACK_PATH[$target]}" \
            >"$OUT/$target-$mode.slowhttptest.log" 2>&1 &
        waits+=($!)
        in_srv "$PROBE" probe --addr "$SERVER:${PORT[$target]}" --path "${PROBE_PATH[$target]}" \
            --seconds "$SECONDS_EACH" >"$OUT/$target-$mode.probe" 2>&1 &
        waits+=($!)
    done
    for pid in "${waits[@]}"; do
        wait "$pid"
    done
    for target in supernode node nginx; do
        probe=$(tail -n 1 "$OUT/$target-$mode.probe")
        value() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$probe"; }
        available=$(value available)
        timeline=$(value timeline)
        # slowhttptest's CSV: seconds,closed,pending,connected,service available (0 = no).
        own=$(awk -F, 'NR > 1 { printf "%s", ($5 > 0 ? "#" : ".") }' "$OUT/$target-$mode.csv" 2>/dev/null)
        own_available=$(tr -cd '#' <<<"$own" | wc -c)
        peak=$(awk -F, 'NR > 1 && $4 > max { max = $4 } END { print max + 0 }' "$OUT/$target-$mode.csv" 2>/dev/null)
        verdict=-
        if [[ $target != nginx ]]; then
            if [[ $available == "$SECONDS_EACH" ]]; then verdict=PASS; else verdict=FAIL; failed=1; fi
        fi
        rows+=("| $target | ${MODE_NAME[$mode]} | $peak | $own_available/${#own} \`$own\` | ${available:-?}/$SECONDS_EACH \`$timeline\` | $(value worst_ms) | $(value answers) | $verdict |")
        say "$target ${MODE_NAME[$mode]}: second address $available/$SECONDS_EACH available, attacker's probe $own_available/${#own}"
    done
done

{
    echo "# superpeer under slowhttptest"
    echo
    echo "Made by \`scripts/attack.sh\` (\`make attack\`) on $(date -u '+%Y-%m-%d %H:%M:%S UTC'), superpeer $(git rev-parse --short HEAD 2>/dev/null)."
    echo "$CONNECTIONS connections per attack (slowhttptest $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1), \`-r 500 -i 1\`), $SECONDS_EACH s each, the three targets attacked at once;"
    echo "$(nginx -v 2>&1 | sed 's/.*: //') with \`worker_connections 4096\` as the reference; superpeer with its default limits."
    echo "Availability per second: \`#\` available, \`.\` not. The attacker's probe is slowhttptest's own, from"
    echo "the attacking address (a 503 from the per-address cap counts as an answer there); the second address"
    echo "is a fresh client every 100 ms from another address, available when every answer in the second was a"
    echo "200 within 500 ms."
    echo
    echo "| target | attack | attacker's connections held (peak) | attacker's probe | second address | worst (ms) | its answers | result |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$RESULTS"
say "== the datagram attacks on the open mode (cargo test --test tests lab::open_mode::)"
datagrams=$OUT/datagrams.log
(cd "$ROOT" && cargo test --quiet --test tests -- --ignored --test-threads=1 lab::open_mode::) \
    >"$datagrams" 2>&1 || failed=1
{
    echo
    echo "## Datagram attacks on the open mode"
    echo
    echo "Made by \`tests/lab/open_mode.rs\` in the same run: host-4 of a LAN of namespaces forges"
    echo "datagrams under its own address and, through a raw socket, under host-5's; the seed's layout"
    echo "runs at the default settings while a client on host-2 checks every answer. One line per figure:"
    echo
    grep -E '^(PASS|FAIL) ' "$datagrams" | sed 's/^/- /'
} >>"$RESULTS"
cat "$RESULTS"
say "table written to ${RESULTS#"$ROOT"/}"
exit "$failed"
