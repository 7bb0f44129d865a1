#!/usr/bin/env bash
# The seed's demonstration on one machine: two supernodes and three nodes on 127.0.0.1,
# started from config/, then a walk through the HTTP API with curl.
#
#   supernode1 :5000  <- node1 :8000, node2 :8001
#   supernode2 :5001  <- node3 :8002
#   supernode1 and supernode2 ask each other over multicast (230.0.0.0:4321, TTL 1,
#   interface 127.0.0.1: no packet leaves the machine).
#
# Usage: scripts/demo.sh (or make demo). It builds the release binary first (about a minute
# the first time). DEMO_EXIT=1 stops the cluster when the walk-through ends; otherwise the
# cluster keeps running until Ctrl-C, each instance's web page at http://127.0.0.1:PORT/.
# DEMO_KEY=1 gives the whole cluster a fresh cluster key (every registration and datagram
# signed). DEMO_IPV6=1 runs it all on ::1 (URLs and locations [::1]:PORT, an IPv6 group):
# Linux's loopback has no IPv6 multicast, so there the two supernodes ask each other through
# PEERS, by unicast, on fixed ports (4322, 4323). Exits non-zero when an instance does not come
# up or an answer is not the expected one. Needs curl, python3 and sha256sum.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=target/release/superpeer
HOST=127.0.0.1
HOST_IP=127.0.0.1
# How the supernodes reach each other, for the tour's words.
OVER="over multicast"
if [[ ${DEMO_IPV6:-0} == 1 ]]; then
    HOST='[::1]'
    HOST_IP=::1
    OVER="through PEERS"
fi
# The same, as a grep pattern (the brackets taken literally).
HOST_RE=${HOST//[/\\[}
HOST_RE=${HOST_RE//]/\\]}
NAMES=(supernode1 supernode2 node1 node2 node3)
ROLES=(supernode supernode node node node)
PORTS=(5000 5001 8000 8001 8002)
READY_SECONDS=15
S1="http://$HOST:5000/api/supernode"
N1="http://$HOST:8000/api/node"
N2="http://$HOST:8001/api/node"

# shellcheck source=scripts/clean-env.sh
source scripts/clean-env.sh
if [[ ${DEMO_KEY:-0} == 1 ]]; then
    CLUSTER_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export CLUSTER_KEY
fi

die() {
    echo "demo: $*" >&2
    exit 1
}

for tool in curl python3 sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; install it (e.g. apt-get install -y $tool)"
done

# Is something already listening on 127.0.0.1:PORT? (bash's /dev/tcp, no other tool needed)
port_busy() {
    (exec 3<>"/dev/tcp/$HOST_IP/$1") 2>/dev/null
}

# With DEMO_IPV6=1, what instance NAME takes over its config/NAME.env (the environment wins):
# one KEY=VALUE a line.
ipv6_settings() {
    [[ ${DEMO_IPV6:-0} == 1 ]] || return 0
    echo "LHOST=::1"
    case $1 in
        supernode1 | supernode2)
            local own=4322 other=4323
            [[ $1 == supernode1 ]] || { own=4323 other=4322; }
            echo "MULTICAST_LOCATION=[ff12::230]:4321"
            echo "UNICAST_PORT=$own"
            echo "PEERS=[::1]:$other"
            ;;
        node1 | node2) echo "SUPERNODE_ENDPOINT=http://[::1]:5000/api/supernode" ;;
        node3) echo "SUPERNODE_ENDPOINT=http://[::1]:5001/api/supernode" ;;
    esac
}

for i in "${!NAMES[@]}"; do
    if port_busy "${PORTS[i]}"; then
        die "port ${PORTS[i]} on $HOST (for ${NAMES[i]}) is already in use; stop whatever listens there (ss -ltnp 'sport = :${PORTS[i]}') and try again"
    fi
done
if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Hlun 'sport = :4321' 2>/dev/null)" ]]; then
    echo "demo: warning: something already listens on UDP port 4321 (another supernode in the group?);" >&2
    echo "demo: warning: its answers may mix with this cluster's searches" >&2
fi

# Shows cargo's lines as they come (a line each crate) and, whenever it has been quiet for
# 5 s (the optimized, link-time-optimized build of superpeer itself is most of the time), how
# long the build has taken so far.
show_progress() {
    local line started=$SECONDS status
    while true; do
        IFS= read -r -t 5 line && status=0 || status=$?
        if ((status == 0)); then
            echo "$line"
        elif ((status > 128)); then
            [[ -z $line ]] || echo "$line"
            echo "   ... still building ($((SECONDS - started)) s)"
        else
            [[ -z $line ]] || echo "$line"
            return 0
        fi
    done
}

echo "== building the release binary: cargo build --release"
echo "   (about a minute on a fresh checkout, where every crate is compiled and optimized; seconds after)"
cargo build --release 2>&1 | show_progress || die "cargo build --release failed (its output is above)"

# A file node2 and node3 both hold, of 64 pieces (their configs set PIECE_SIZE=16384): the tour
# downloads it from both at once. Made here, not kept in git (.gitignore).
python3 -c '
data = bytes((i * 7 + i // 251) % 256 for i in range(1 << 20))
for node in ("node2", "node3"):
    with open(f"resources/{node}/shared_1MiB.bin", "wb") as f:
        f.write(data)
' || die "cannot write resources/node2/shared_1MiB.bin and resources/node3/shared_1MiB.bin"

LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/superpeer-demo.XXXX")
WORK="$LOG_DIR/.http"
mkdir -p "$WORK"
PIDS=()

# Stops exactly the instances this script started, and waits for them.
cleanup() {
    trap - EXIT INT TERM
    ((${#PIDS[@]})) || return 0
    kill "${PIDS[@]}" 2>/dev/null || true
    local pid deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait "${PIDS[@]}" 2>/dev/null || true
    echo "demo: stopped the cluster (pids ${PIDS[*]}); logs kept in $LOG_DIR" >&2
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# Shows the end of every log, for a failure.
show_logs() {
    local name
    for name in "${NAMES[@]}"; do
        [[ -f "$LOG_DIR/$name.log" ]] || continue
        echo "--- $LOG_DIR/$name.log (last lines)" >&2
        tail -n 15 "$LOG_DIR/$name.log" >&2
    done
}

fail() {
    echo "demo: FAILED: $*" >&2
    show_logs
    exit 1
}

if [[ ${DEMO_IPV6:-0} == 1 ]]; then
    echo "== IPv6: every instance on ::1; the supernodes ask each other through PEERS (no IPv6 multicast on loopback)"
fi
if [[ -n ${CLUSTER_KEY:-} ]]; then
    echo "== a fresh cluster key for every instance: registrations, heartbeats and datagrams signed"
fi
echo "== starting the cluster (logs in $LOG_DIR)"
for i in "${!NAMES[@]}"; do
    mapfile -t settings < <(ipv6_settings "${NAMES[i]}")
    env "${settings[@]}" "$BIN" "${ROLES[i]}" --config "${NAMES[i]}" >"$LOG_DIR/${NAMES[i]}.log" 2>&1 &
    PIDS+=("$!")
    printf '   %-10s pid %-7s http://%s:%s\n' "${NAMES[i]}" "$!" "$HOST" "${PORTS[i]}"
done

# Fails at once when an instance has exited (a bad config, a port taken meanwhile, ...).
check_running() {
    local i
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[i]}" 2>/dev/null || fail "${NAMES[i]} (pid ${PIDS[i]}) exited early"
    done
}

# The body of GET URL on success, nothing otherwise.
get_quiet() {
    curl -sf --max-time 2 "$1" 2>/dev/null || true
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local what=$1 deadline=$((SECONDS + READY_SECONDS))
    shift
    until "$@"; do
        check_running
        ((SECONDS < deadline)) || fail "$what: not ready after ${READY_SECONDS}s"
        sleep 0.1
    done
}

node_healthy() {
    [[ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://$HOST:$1/api/node/health" || true)" == 200 ]]
}

# lists_nodes SUPERNODE_PORT LOCATION...: the supernode's live nodes include every LOCATION.
lists_nodes() {
    local body port=$1
    shift
    body=$(get_quiet "http://$HOST:$port/api/supernode/alive")
    [[ -n "$body" ]] || return 1
    python3 -c '
import json, sys
live = {n.get("location") for n in json.loads(sys.argv[1]).get("data", [])}
sys.exit(0 if set(sys.argv[2:]) <= live else 1)' "$body" "$@"
}

for port in 8000 8001 8002; do
    wait_for "node on port $port" node_healthy "$port"
done
wait_for "supernode1 listing node1 and node2" lists_nodes 5000 "$HOST:8000" "$HOST:8001"
wait_for "supernode2 listing node3" lists_nodes 5001 "$HOST:8002"
echo "== cluster ready: every node is registered with its supernode"

# The ids: the SHA-256 of each file's content.
id_of() {
    sha256sum "$1" | cut -d' ' -f1
}
ID_LOCAL=$(id_of resources/node1/resource_ahXhUa)
ID_LOCAL2=$(id_of resources/node1/resource_Qe7pLm)
ID_NODE3=$(id_of resources/node3/resource_g7XqMu)
ID_SHARED=$(id_of resources/node2/resource_sH4r3d)
[[ "$ID_SHARED" == "$(id_of resources/node3/resource_sH4r3d)" ]] ||
    die "resources/node2/resource_sH4r3d and resources/node3/resource_sH4r3d must have the same content"
ID_BIG=$(id_of resources/node2/shared_1MiB.bin)
ID_UNKNOWN=$(printf 'a file nobody has' | sha256sum | cut -d' ' -f1)
ID_NOBODY=ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff

STEP=0
ELAPSED_MS=0
# step TEXT: a numbered heading and a one-line explanation.
step() {
    STEP=$((STEP + 1))
    echo
    echo "== $STEP. $1"
    echo "   $2"
}

# Prints a body: pretty JSON when it is JSON, else as it is.
show_body() {
    if [[ -s "$1" ]]; then
        python3 -m json.tool "$1" 2>/dev/null || cat "$1"
    fi
}

# http EXPECTED_STATUS HEADERS URL: runs `curl -s` (or `curl -si` when HEADERS is 1, then the
# status line and the Location header are shown), prints the answer and checks its status.
# The time curl took is left in ELAPSED_MS.
http() {
    local expect=$1 headers=$2 url=$3 shown=$3 status result
    [[ "$url" != *'?'* ]] || shown="'$url'"
    if ((headers)); then echo "\$ curl -si $shown"; else echo "\$ curl -s $shown"; fi
    result=$(curl -s --max-time 10 -D "$WORK/headers" -o "$WORK/body" \
        -w '%{http_code} %{time_total}' "$url") || fail "curl $url: no answer"
    status=${result%% *}
    ELAPSED_MS=$(python3 -c 'import sys; print(round(float(sys.argv[1]) * 1000))' "${result#* }")
    if ((headers)); then
        head -n 1 "$WORK/headers" | tr -d '\r'
        grep -i '^location:' "$WORK/headers" | tr -d '\r' || true
        echo
    fi
    show_body "$WORK/body"
    [[ "$status" == "$expect" ]] || fail "expected HTTP $expect from $url, got $status"
}

# json_check PYTHON_EXPRESSION MESSAGE: checks the last answer's JSON (as `d`).
json_check() {
    python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if ($1) else 1)" "$WORK/body" || fail "$2"
}

step "node1's resources" \
    "A node lists the files it holds; each id is the SHA-256 of the file's content."
http 200 0 "$N1/resources"
json_check "len(d['data']) == 5" "node1 should list 5 resources"

step "one of node1's resources, asked of node1" \
    "node1 holds resource_ahXhUa itself, so it answers 200 with its id and name."
http 200 0 "$N1/resources/$ID_LOCAL"
json_check "d['data']['name'] == 'resource_ahXhUa'" "node1 should name resource_ahXhUa"

step "a resource only node3 holds, asked of node2" \
    "node2 asks supernode1, which asks supernode2 $OVER: a 302 to node3 (:8002)."
http 302 1 "$N2/resources/$ID_NODE3"
grep -qi "^location: http://$HOST_RE:8002/api/node/resources/$ID_NODE3" "$WORK/headers" ||
    fail "the 302 should point at node3 ($HOST:8002)"

step "downloading it through node2" \
    "curl -L follows node2's 302 to node3's content; the bytes' SHA-256 is the id."
url="$N2/resources/$ID_NODE3/content"
echo "\$ curl -sL $url"
result=$(curl -sL --max-time 10 -o "$WORK/body" -w '%{http_code} %{num_redirects}' "$url") ||
    fail "curl $url: no answer"
cat "$WORK/body"
[[ "$result" == "200 1" ]] || fail "expected 200 after one redirect from $url, got '$result'"
echo "\$ curl -sL $url | sha256sum"
digest=$(id_of "$WORK/body")
echo "$digest  -"
echo "   the id asked for:  $ID_NODE3"
[[ "$digest" == "$ID_NODE3" ]] || fail "the content's SHA-256 is not the id"

step "the resource node2 and node3 share, searched on supernode1" \
    "supernode1 knows node2's copy (:8001); node3's copy is in supernode2's index."
http 200 0 "$S1/search/$ID_SHARED"
json_check "'$HOST:8001' in d['data']['file']['locations']" "supernode1 should locate it at node2"
echo "\$ curl -s http://$HOST:5001/api/supernode/search/$ID_SHARED   # the same, asked of supernode2"
curl -s --max-time 10 -o "$WORK/body" "http://$HOST:5001/api/supernode/search/$ID_SHARED" ||
    fail "supernode2: no answer"
show_body "$WORK/body"
json_check "'$HOST:8002' in d['data']['file']['locations']" "supernode2 should locate it at node3"

step "several ids at once, asked of node1" \
    "Two of node1's own, node3's, and one nobody has: the unknown id is left out of the answer."
http 200 0 "$N1/resources/find?hash_ids=$ID_LOCAL,$ID_LOCAL2,$ID_NODE3,$ID_UNKNOWN"
json_check "sorted(e['id'] for e in d['data']) == sorted(['$ID_LOCAL', '$ID_LOCAL2', '$ID_NODE3'])" \
    "find should answer the three known ids and leave the unknown one out"

step "an id nobody has, searched on supernode1" \
    "supernode2 answers 'not here' $OVER, so supernode1 says 404 without waiting out the time-out."
http 404 1 "$S1/search/$ID_NOBODY"
echo "   (answered in $ELAPSED_MS ms; the search time-out is 2000 ms)"

step "a name search, asked of supernode1" \
    "Any part of a name, in any case: supernode2 answers for node3's file $OVER."
http 200 0 "$S1/search?file_name=RESOURCE_G7X"
json_check "[f['file']['name'] for f in d['data']] == ['resource_g7XqMu'] and d['data'][0]['file']['location'] == '$HOST:8002'" \
    "supernode1 should find resource_g7XqMu at node3 by a part of its name"

step "a download cut half-way, resumed through another node" \
    "The first half from node3 itself, then curl -C - asks node1 for the rest: its 302 keeps the range."
size=$(wc -c <resources/node3/resource_g7XqMu)
half=$((size / 2))
url="http://$HOST:8002/api/node/resources/$ID_NODE3/content"
echo "\$ curl -s -r 0-$((half - 1)) -o part $url"
curl -s --max-time 10 -r "0-$((half - 1))" -o "$WORK/part" "$url" || fail "curl $url: no answer"
url="$N1/resources/$ID_NODE3/content"
echo "\$ curl -sL -C - -o part $url"
result=$(curl -sL --max-time 10 -C - -o "$WORK/part" -w '%{http_code}' "$url") ||
    fail "curl -C - $url: no answer"
[[ "$result" == 206 ]] || fail "expected 206 for the rest of the file, got $result"
digest=$(id_of "$WORK/part")
echo "   $half of $size bytes first, the rest with HTTP $result; sha256 $digest"
[[ "$digest" == "$ID_NODE3" ]] || fail "the resumed file's SHA-256 is not the id"

step "superpeer get, by a part of the name, through node1" \
    "The client subcommand: finds the holders, downloads, keeps the file only when it hashes to its id."
echo "\$ superpeer get g7xq --via http://$HOST:8000 -o got"
"$BIN" get g7xq --via "http://$HOST:8000" -o "$WORK/got" >/dev/null || fail "superpeer get failed"
[[ "$(id_of "$WORK/got")" == "$ID_NODE3" ]] || fail "superpeer get kept a file that is not the id"
echo "   saved; its SHA-256 is $ID_NODE3"

# pieces_sent PORT: how many pieces (206 answers) the node on PORT has sent.
pieces_sent() {
    curl -s --max-time 10 "http://$HOST:$1/metrics" |
        awk '/^superpeer_http_requests_total\{route="\/api\/node\/resources\/\{id\}\/content",status="206"\}/ { n = $2 } END { print n + 0 }'
}

step "superpeer get of a file node2 and node3 both hold, through supernode1" \
    "Pieces from both at once, every piece checked against its SHA-256 before it is written."
echo "\$ curl -s $N2/resources/$ID_BIG/pieces   # the piece list (first lines)"
curl -s --max-time 10 "$N2/resources/$ID_BIG/pieces" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
print("   size %d, piece_size %d, %d pieces: %s, %s, ..." % (d["size"], d["piece_size"], len(d["pieces"]), d["pieces"][0][:16], d["pieces"][1][:16]))' ||
    fail "node2 gave no piece list"
before2=$(pieces_sent 8001)
before3=$(pieces_sent 8002)
echo "\$ superpeer get $ID_BIG --via http://$HOST:5000 -o big"
"$BIN" get "$ID_BIG" --via "http://$HOST:5000" -o "$WORK/big" >/dev/null || fail "superpeer get failed"
[[ "$(id_of "$WORK/big")" == "$ID_BIG" ]] || fail "superpeer get kept a file that is not the id"
sent2=$(($(pieces_sent 8001) - before2))
sent3=$(($(pieces_sent 8002) - before3))
echo "   node2 sent $sent2 pieces, node3 $sent3; the whole file's SHA-256 is the id"
((sent2 > 0 && sent3 > 0)) || fail "both holders should have sent pieces (node2 $sent2, node3 $sent3)"

step "the same file with aria2c, from a Metalink document" \
    "Every holder's URL, the size, the SHA-256 and the piece hashes, for standard download tools."
url="$S1/search/$ID_BIG/metalink"
echo "\$ curl -s $url | head -n 8"
# Whole into a file first: head closing the pipe early would fail curl's next write.
curl -s --max-time 10 -o "$WORK/metalink" "$url" || fail "supernode1 gave no Metalink document"
head -n 8 "$WORK/metalink"
if command -v aria2c >/dev/null 2>&1; then
    echo "\$ aria2c $url"
    # Saved under the document's name, in a folder of its own.
    aria2c --no-conf --quiet --dir "$WORK/aria2" "$url" || fail "aria2c failed"
    [[ "$(id_of "$WORK/aria2/shared_1MiB.bin")" == "$ID_BIG" ]] || fail "aria2c's file is not the id"
    echo "   saved as shared_1MiB.bin, every piece checked by aria2c; its SHA-256 is the id"
else
    echo "   (aria2c is not installed: apt-get install aria2, then aria2c $url)"
fi

step "the live nodes of supernode1" \
    "The nodes registered with supernode1 that answer its health checks."
http 200 0 "$S1/alive"
json_check "sorted(n['location'] for n in d['data']) == ['$HOST:8000', '$HOST:8001']" \
    "supernode1 should list node1 and node2"

echo
echo "== demo passed: every answer was the expected one"

# The closing banner: each instance's web page (open it in a browser) and API.
pages() {
    printf '   %-10s  %-24s  %s\n' instance "web page" API
    for i in "${!NAMES[@]}"; do
        printf '   %-10s  %-24s  %s\n' "${NAMES[i]}" "http://$HOST:${PORTS[i]}/" \
            "http://$HOST:${PORTS[i]}/api/${ROLES[i]}"
    done
}

echo
if [[ "${DEMO_EXIT:-0}" == 1 ]]; then
    echo "the cluster stops now (DEMO_EXIT=1); make demo without it keeps it running, with these pages:"
    pages
    exit 0
fi

echo "cluster running; Ctrl-C to stop. Open a web page in a browser:"
pages
echo "   logs:       $LOG_DIR"
# Until Ctrl-C, or until an instance stops on its own.
while true; do
    wait -n || true
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[i]}" 2>/dev/null || fail "${NAMES[i]} (pid ${PIDS[i]}) stopped"
    done
done
