#!/usr/bin/env bash
# machine/vms.sh: the seed's three Debian 12 VMs (machine/Vagrantfile's host-1, host-2, host-3),
# booted for real with qemu, without Vagrant or VirtualBox, provisioned by machine/provision.sh.
#
#   machine/vms.sh image    install the tools, build the Debian 12 image (cached under target/vm/)
#   machine/vms.sh up       image, then boot the three VMs, provision each, leave them running
#   machine/vms.sh status   what runs
#   machine/vms.sh exec host-N COMMAND...   run a command as root in a VM (the command channel)
#   machine/vms.sh test     down, up, the seed's demonstration and the systemd checks, down
#   machine/vms.sh down     stop the VMs, remove the taps, bridge, namespace and state
#
# The image: `debootstrap --variant=minbase` of bookworm (Debian's package registry: the only
# outside access, made on the host before any VM runs) is kept in target/vm/rootfs-<key>/, keyed
# by the package list; the bootable ext4 image made from it (network config, fstab, the user
# vagrant, the guest agent) is target/vm/base-<key>.img with its kernel and initrd, keyed by the
# package list and by this script's customize_rootfs. Neither holds anything of the project:
# every VM boots the image with -snapshot (its writes are thrown away when it stops) and is
# provisioned on every `up`, as Vagrant does: the project's files (git's files and dist/, as
# Vagrant's rsync copies them) are on a second disk mounted at /vagrant, and
# `bash /vagrant/machine/provision.sh host-N` runs as root once the VM has booted.
#
# The network (no packet leaves the machine; nothing is attached to the host's interfaces):
#
#   namespace spvm-lan: bridge br0 192.168.35.1/24 (multicast snooping off), taps tap1..tap3
#   host-1: qemu, virtio NIC on tap1, 52:54:00:35:00:10 -> 192.168.35.10/24 (systemd-networkd)
#   host-2: qemu, virtio NIC on tap2, 52:54:00:35:00:11 -> 192.168.35.11/24
#   host-3: qemu, virtio NIC on tap3, 52:54:00:35:00:12 -> 192.168.35.12/24
#
# The taps are made inside spvm-lan and qemu runs there (ip netns exec): no user-mode network,
# no port forward. curl drives the demonstration from spvm-lan. The command channel into a VM
# is the QEMU guest agent on a virtio-serial port, a unix socket on the host (machine/qga.py):
# no SSH, no IP. Software emulation (TCG): under KVM the guests hang on this kind of machine.
#
# Needs root. Environment: VMS_STATE_DIR (default /tmp/superpeer-vms: PIDs, sockets, consoles,
# disks of the running VMs), VMS_CACHE_DIR (default target/vm), VMS_MIRROR (default
# http://deb.debian.org/debian), VMS_MEMORY (MiB per VM, default 512 as in the Vagrantfile),
# VMS_BOOT_TIMEOUT (s, default 420), VMS_BIN (default dist/superpeer: what provision.sh installs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/machine
STATE=${VMS_STATE_DIR:-/tmp/superpeer-vms}
CACHE=${VMS_CACHE_DIR:-$ROOT/target/vm}
MIRROR=${VMS_MIRROR:-http://deb.debian.org/debian}
MEMORY=${VMS_MEMORY:-512}
BOOT_TIMEOUT=${VMS_BOOT_TIMEOUT:-420}
VMS_BIN=${VMS_BIN:-$ROOT/dist/superpeer}
SUITE=bookworm
# What the image holds besides minbase: systemd, the kernel, the tools provision.sh uses (make,
# curl: the VMs cannot download anything) and the guest agent (the command channel).
INCLUDE=systemd-sysv,linux-image-amd64,iproute2,curl,udev,qemu-guest-agent,make
NS=spvm-lan
HOSTS=(host-1 host-2 host-3)
QGA=(python3 "$HERE/qga.py")

# Byte order for sort and comm.
export LC_ALL=C
# Nothing of the caller's proxies for the demo's curl.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

say() { printf 'vms: %s\n' "$*"; }
die() {
    printf 'vms: error: %s\n' "$*" >&2
    exit 1
}

host_num() { echo "${1#host-}"; }
host_ip() { echo "192.168.35.$((9 + $(host_num "$1")))"; }
host_mac() { printf '52:54:00:35:00:%02d' "$((9 + $(host_num "$1")))"; }
host_instances() {
    case "$1" in
        host-1) echo "supernode1 supernode2" ;;
        host-2) echo "node1" ;;
        host-3) echo "node2 node3" ;;
    esac
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root: it makes a network namespace, taps and a bridge, and runs debootstrap (try: sudo make ${1:-vms})"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
since_ms() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# --- tools ------------------------------------------------------------------------------------

# debootstrap, qemu, mkfs.ext4, python3 (the agent's client), curl, sha256sum. qemu-system-x86
# comes from bookworm; where a newer qemu-utils from bookworm-backports is installed (it breaks
# bookworm's qemu-system-common) the matching qemu-system-x86 comes from backports, whose
# source is added for that one install and removed again.
install_tools() {
    local need=()
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    if ((${#need[@]})); then
        say "installing ${need[*]}"
        bash "$ROOT/scripts/apt-install.sh" "${need[@]}"
    fi
    command -v qemu-system-x86_64 >/dev/null 2>&1 && return 0
    say "installing qemu-system-x86"
    if bash "$ROOT/scripts/apt-install.sh" --no-install-recommends qemu-system-x86 2>/dev/null; then
        return 0
    fi
    local list=/etc/apt/sources.list.d/superpeer-vms-backports.sources
    say "qemu-system-x86 from bookworm does not install beside this machine's packages; trying bookworm-backports"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" >"$list"
    local status=0
    bash "$ROOT/scripts/apt-install.sh" --no-install-recommends -t bookworm-backports qemu-system-x86 || status=$?
    rm -f "$list"
    apt-get update -qq || true
    ((status == 0)) || die "could not install qemu-system-x86"
}

# --- the image --------------------------------------------------------------------------------

rootfs_key() { printf '%s\n' "$SUITE" minbase "$INCLUDE" | sha256sum | cut -c1-12; }

# The bare debootstrap tree, fetched once: target/vm/rootfs-<key>.
ensure_rootfs() {
    ROOTFS=$CACHE/rootfs-$(rootfs_key)
    [[ -f $ROOTFS/.complete ]] && return 0
    mkdir -p "$CACHE"
    rm -rf "$ROOTFS.tmp"
    say "debootstrap $SUITE (minbase + $INCLUDE) from $MIRROR into $ROOTFS"
    local started
    started=$(now)
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.tmp" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log" >&2
        die "debootstrap failed (the whole log: $CACHE/debootstrap.log)"
    fi
    rm -rf "$ROOTFS"
    mv "$ROOTFS.tmp" "$ROOTFS"
    touch "$ROOTFS/.complete"
    say "debootstrap done in $(since "$started") s ($(du -sh "$ROOTFS" | cut -f1))"
}

# What makes the bare tree a bootable VM of the Vagrantfile's kind. Its text is part of the
# image's cache key: a change here builds a new image.
customize_rootfs() {
    local t=$1 host
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\nLABEL=vagrant /vagrant ext4 rw,nofail 0 0\n' >"$t/etc/fstab"
    mkdir -p "$t/vagrant"
    echo debian >"$t/etc/hostname"
    # One static address per VM, chosen by the NIC's MAC address (the Vagrantfile's
    # private_network); no default route, no DNS: nothing outside 192.168.35.0/24 exists.
    mkdir -p "$t/etc/systemd/network"
    for host in "${HOSTS[@]}"; do
        printf '[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
            "$(host_mac "$host")" "$(host_ip "$host")" >"$t/etc/systemd/network/10-$host.network"
    done
    printf '127.0.0.1 localhost\n192.168.35.10 host-1\n192.168.35.11 host-2\n192.168.35.12 host-3\n' >"$t/etc/hosts"
    systemctl --root="$t" enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
    # wait-online: the one link, not every link networkd might see.
    mkdir -p "$t/etc/systemd/system/systemd-networkd-wait-online.service.d"
    printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60\n' \
        >"$t/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
    # Vagrant's user (provision.sh installs ~vagrant/code/Makefile); root has no password: the
    # VMs are reached through the guest agent only.
    chroot "$t" /usr/sbin/useradd --create-home --shell /bin/bash vagrant
    # The journal in memory (the VM's disk is a throw-away snapshot anyway).
    mkdir -p "$t/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$t/etc/systemd/journald.conf.d/volatile.conf"
}

image_key() {
    { rootfs_key; declare -f customize_rootfs; } | sha256sum | cut -c1-12
}

# The bootable image, its kernel and initrd: target/vm/base-<key>.{img,vmlinuz,initrd}.
ensure_image() {
    ensure_rootfs
    IMAGE=$CACHE/base-$(image_key)
    [[ -f $IMAGE.img && -f $IMAGE.vmlinuz && -f $IMAGE.initrd ]] && return 0
    local started stage kernel initrd
    started=$(now)
    stage=$CACHE/stage.tmp
    rm -rf "$stage"
    say "making the VM image $IMAGE.img"
    cp -a "$ROOTFS" "$stage"
    rm -f "$stage/.complete"
    customize_rootfs "$stage"
    kernel=$(find "$stage/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)
    initrd=$(find "$stage/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n 1)
    [[ -n $kernel && -n $initrd ]] || die "no kernel or initrd in $ROOTFS/boot"
    rm -f "$IMAGE".*
    cp "$kernel" "$IMAGE.vmlinuz.tmp"
    cp "$initrd" "$IMAGE.initrd.tmp"
    truncate -s 3G "$IMAGE.img.tmp"
    mkfs.ext4 -q -F -L root -d "$stage" "$IMAGE.img.tmp"
    rm -rf "$stage"
    mv "$IMAGE.vmlinuz.tmp" "$IMAGE.vmlinuz"
    mv "$IMAGE.initrd.tmp" "$IMAGE.initrd"
    mv "$IMAGE.img.tmp" "$IMAGE.img"
    # Older images of this cache are of no use any more.
    find "$CACHE" -maxdepth 1 -name 'base-*' ! -name "base-$(image_key).*" -delete
    say "image made in $(since "$started") s"
}

# /vagrant: the project as Vagrant's rsync would copy it (without .git/, target/, and what git
# ignores, but with dist/superpeer), one small ext4 disk per VM.
make_vagrant_disk() {
    local host=$1 stage=$STATE/vagrant.tmp
    if [[ ! -d $stage ]]; then
        mkdir -p "$stage"
        if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
            local f files=()
            while IFS= read -r -d '' f; do
                [[ -e $ROOT/$f ]] && files+=("$f") # deleted in the working tree: not copied
            done < <(git -C "$ROOT" ls-files -z --cached --others --exclude-standard)
            printf '%s\0' "${files[@]}" | tar -C "$ROOT" --null -T - -cf - | tar -C "$stage" -xf -
        else
            tar -C "$ROOT" -cf - machine resources config | tar -C "$stage" -xf -
        fi
        mkdir -p "$stage/dist"
        cp "$VMS_BIN" "$stage/dist/superpeer"
    fi
    local size
    size=$(du -sm "$stage" | cut -f1)
    truncate -s "$((size * 2 + 64))M" "$STATE/$host-vagrant.img"
    mkfs.ext4 -q -F -L vagrant -d "$stage" "$STATE/$host-vagrant.img"
}

# --- the network ------------------------------------------------------------------------------

net_up() {
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge mcast_snooping 0
    ip -n "$NS" addr add 192.168.35.1/24 dev br0
    ip -n "$NS" link set br0 up
    local host n
    for host in "${HOSTS[@]}"; do
        n=$(host_num "$host")
        ip -n "$NS" tuntap add dev "tap$n" mode tap
        ip -n "$NS" link set "tap$n" master br0
        ip -n "$NS" link set "tap$n" up
    done
}

# --- the VMs ----------------------------------------------------------------------------------

qemu_pid() { # host: the PID of its qemu, when it still runs that VM
    local pid
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-name superpeer-$1 " || return 1
    echo "$pid"
}

boot() {
    local host=$1 n
    n=$(host_num "$host")
    # -snapshot: the image is shared and never written; each VM's writes go to a temporary
    # file that qemu deletes. -nodefaults: no VGA, no default NIC (no user-mode network).
    ip netns exec "$NS" qemu-system-x86_64 \
        -name "superpeer-$host" \
        -machine q35 -accel tcg -m "$MEMORY" -smp 1 \
        -nodefaults -display none -no-user-config \
        -kernel "$IMAGE.vmlinuz" -initrd "$IMAGE.initrd" \
        -append "root=/dev/vda rw console=ttyS0 systemd.hostname=$host net.ifnames=0 panic=10" \
        -drive "file=$IMAGE.img,if=virtio,format=raw,snapshot=on" \
        -drive "file=$STATE/$host-vagrant.img,if=virtio,format=raw" \
        -netdev "tap,id=lan,ifname=tap$n,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=lan,mac=$(host_mac "$host")" \
        -chardev "socket,id=qga,path=$STATE/$host.qga,server=on,wait=off" \
        -device virtio-serial-pci \
        -device "virtserialport,chardev=qga,name=org.qemu.guest_agent.0" \
        -serial "file:$STATE/$host.console" \
        -monitor none \
        -pidfile "$STATE/$host.pid" -daemonize
}

# exec_in HOST [--timeout S] -- COMMAND...: COMMAND as root in the VM, through its agent.
exec_in() {
    local host=$1
    shift
    "${QGA[@]}" "$STATE/$host.qga" exec "$@"
}

sh_in() { # host script [timeout]: a shell script as root in the VM
    exec_in "$1" --timeout "${3:-120}" -- /bin/sh -c "$2"
}

up_exit() {
    if ((UP_DONE == 0)); then
        say "up failed: stopping what it started"
        down >/dev/null 2>&1 || true
    fi
}

up() {
    require_root up
    [[ -x $VMS_BIN ]] || die "$VMS_BIN is missing: run make dist first (make vms does)"
    if [[ -d $STATE ]] || ip netns list | grep -qw "$NS"; then
        die "VMs are up already (or left over): make vms-down first"
    fi
    install_tools
    ensure_image
    local started host
    started=$(now)
    mkdir -p "$STATE"
    UP_DONE=0
    trap up_exit EXIT
    net_up
    for host in "${HOSTS[@]}"; do
        make_vagrant_disk "$host"
        boot "$host"
        say "$host: qemu PID $(qemu_pid "$host"), $(host_ip "$host"), console $STATE/$host.console"
    done
    rm -rf "$STATE/vagrant.tmp"
    for host in "${HOSTS[@]}"; do
        if ! "${QGA[@]}" "$STATE/$host.qga" wait "$BOOT_TIMEOUT"; then
            tail -n 30 "$STATE/$host.console" >&2 || true
            die "$host: no answer from its guest agent within $BOOT_TIMEOUT s (console: $STATE/$host.console)"
        fi
        say "$host: agent answers, $(since "$started") s after the first boot started"
    done
    echo "BOOTED_S=$(since "$started")" >"$STATE/times"
    # Vagrant provisions once the machine has booted: wait for the end of the boot, then run
    # the project's provision.sh as root, as `vagrant up` does (shell provisioner).
    for host in "${HOSTS[@]}"; do
        local state t0
        state=$(sh_in "$host" 'systemctl is-system-running --wait' 300 || true)
        if [[ $state != running ]]; then
            say "$host: system $state; failed units:"
            sh_in "$host" 'systemctl --failed --no-legend --plain' || true
        fi
        t0=$(now)
        say "$host: bash /vagrant/machine/provision.sh $host"
        if ! exec_in "$host" --timeout 300 --env SUPERPEER_AUTOSTART=yes -- \
            /bin/bash /vagrant/machine/provision.sh "$host" 2>&1 | sed "s/^/  $host: /"; then
            die "$host: provision.sh failed"
        fi
        echo "PROVISION_$(host_num "$host")=$(since "$t0")" >>"$STATE/times"
    done
    UP_DONE=1
    say "up: 3 VMs booted and provisioned in $(since "$started") s; make vms-down stops them"
    say "try: ip netns exec $NS curl -s http://192.168.35.10:5000/api/supernode/alive"
    say "     bash machine/vms.sh exec host-3 systemctl status 'superpeer@*'"
}

down() {
    local host pid i
    for host in "${HOSTS[@]}"; do
        if pid=$(qemu_pid "$host"); then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                qemu_pid "$host" >/dev/null || break
                sleep 0.1
            done
            if pid=$(qemu_pid "$host"); then
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.2
            fi
            say "$host: qemu $pid stopped"
        fi
    done
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        ip netns delete "$NS"
        say "namespace $NS (bridge, taps) deleted"
    fi
    rm -rf "$STATE"
}

status() {
    local host pid
    for host in "${HOSTS[@]}"; do
        if pid=$(qemu_pid "$host"); then
            say "$host ($(host_ip "$host")): qemu PID $pid"
        else
            say "$host: not running"
        fi
    done
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        say "namespace $NS present"
    else
        say "no namespace $NS"
    fi
}

# --- the test ---------------------------------------------------------------------------------

PASSED=0
FAILED=0
result() { # ok(0/1) text
    if (($1)); then
        PASSED=$((PASSED + 1))
        printf 'PASS %s\n' "$2"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL %s\n' "$2"
    fi
}

lan_curl() { ip netns exec "$NS" curl -s --max-time 10 "$@"; }

ids_of() { # base url of a node: the ids it lists
    lan_curl "$1/api/node/resources" | grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4
}

# wait_for SECONDS COMMAND...: COMMAND until it succeeds; the seconds it took on stdout.
wait_for() {
    local limit=$1 t0
    shift
    t0=$(now)
    while ! "$@" >/dev/null 2>&1; do
        if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            since "$t0"
            return 1
        fi
        sleep 0.2
    done
    since "$t0"
}

status_is() { # code url [curl args]: the URL answers with that status
    local code=$1
    shift
    [[ $(lan_curl -o /dev/null -w '%{http_code}' "$@") == "$code" ]]
}

unit_prop() { # host unit property
    sh_in "$1" "systemctl show -p $3 --value $2" 30
}

alive_names() { # supernode url: the names of its nodes
    lan_curl "$1/api/supernode/alive" | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ' | sed 's/ $//'
}

all_alive() { # every node registered at one supernode or the other
    local both
    both=$(lan_curl http://192.168.35.10:5000/api/supernode/alive; lan_curl http://192.168.35.10:5001/api/supernode/alive)
    grep -q 192.168.35.11:8000 <<<"$both" && grep -q 192.168.35.12:8000 <<<"$both" && grep -q 192.168.35.12:8001 <<<"$both"
}

booted_again() { # host: it answers with another boot id than BOOT_BEFORE
    local id
    id=$(exec_in "$1" --timeout 10 -- cat /proc/sys/kernel/random/boot_id 2>/dev/null) &&
        [[ -n $id && $id != "$BOOT_BEFORE" ]]
}

registered_again() { # supernode2 logged node3's registration twice (the start, after the kill)
    [[ $(sh_in host-1 "journalctl -u superpeer@supernode2 --no-pager -o cat | grep -c '192.168.35.12:8001 (node3) .* with [0-9]* resources'" 30) -ge 2 ]]
}

node3_restarted() {
    [[ $(unit_prop host-3 superpeer@node3 NRestarts) == 1 && $(unit_prop host-3 superpeer@node3 ActiveState) == active ]]
}

test_all() {
    require_root test
    local t_all host
    t_all=$(now)
    down >/dev/null 2>&1 || true
    trap 'down >/dev/null 2>&1 || true' EXIT
    trap 'exit 130' INT TERM
    local t0 BOOTED_S PROVISION_1 PROVISION_2 PROVISION_3
    t0=$(now)
    # A process of its own, so that `set -e` holds in it (not in a function called by `if`).
    if bash "${BASH_SOURCE[0]}" up; then
        # shellcheck source=/dev/null
        source "$STATE/times"
        result 1 "boot+provision: 3 Debian 12 VMs (qemu TCG, ${MEMORY} MiB each) answered on their agents ${BOOTED_S} s after the first boot started; provision.sh host-1 ${PROVISION_1} s, host-2 ${PROVISION_2} s, host-3 ${PROVISION_3} s; up took $(since "$t0") s in all"
    else
        result 0 "boot+provision: make vms failed after $(since "$t0") s"
        summary "$t_all"
        return 1
    fi

    # From here on a failed check is a FAIL line, not the end of the test.
    set +e
    # systemd: every instance active, started once, listening, and nothing refused by the
    # unit's hardening in its journal.
    local instance active restarts journal ok detail
    for host in "${HOSTS[@]}"; do
        ok=1
        detail=
        for instance in $(host_instances "$host"); do
            active=$(sh_in "$host" "systemctl is-active superpeer@$instance" 30 || true)
            restarts=$(unit_prop "$host" "superpeer@$instance" NRestarts || echo '?')
            journal=$(sh_in "$host" "journalctl -u superpeer@$instance --no-pager -o cat" 30 || true)
            local listening=no refused=no
            grep -q 'listening on http://' <<<"$journal" && listening=yes
            grep -qiE 'not permitted|EPERM|seccomp|permission denied' <<<"$journal" && refused=yes
            [[ $active == active && $restarts == 0 && $listening == yes && $refused == no ]] || ok=0
            detail+=" superpeer@$instance $active (restarts $restarts, journal: listening $listening, refused calls $refused);"
            if [[ $refused == yes || $active != active ]]; then
                grep -iE 'not permitted|EPERM|seccomp|permission denied|error' <<<"$journal" | tail -n 5 | sed "s/^/  $host $instance: /"
            fi
        done
        result "$ok" "systemd $host:${detail%;}"
    done

    local s1=http://192.168.35.10:5000 s2=http://192.168.35.10:5001
    local n1=http://192.168.35.11:8000 n2=http://192.168.35.12:8000 n3=http://192.168.35.12:8001
    # Every node registered (the supernodes list them as alive).
    local secs
    if secs=$(wait_for 60 sh -c "ip netns exec $NS curl -s $s1/api/supernode/alive | grep -q 192.168.35.11:8000 && ip netns exec $NS curl -s $s1/api/supernode/alive | grep -q 192.168.35.12:8000 && ip netns exec $NS curl -s $s2/api/supernode/alive | grep -q 192.168.35.12:8001"); then
        result 1 "registered: node1 and node2 alive at supernode1, node3 at supernode2 (${secs} s after provisioning)"
    else
        result 0 "registered: not every node alive at its supernode after ${secs} s: supernode1 $(lan_curl "$s1/api/supernode/alive"), supernode2 $(lan_curl "$s2/api/supernode/alive")"
    fi

    # An id only node3 holds.
    local id3=
    id3=$(comm -23 <(ids_of "$n3" | sort -u) <({
        ids_of "$n2"
        ids_of "$n1"
    } | sort -u) | head -n 1)
    if [[ -z $id3 ]]; then
        result 0 "demo: node3 lists no resource of its own (resources/node3 in the VM?)"
        summary "$t_all"
        return 1
    fi

    # node2 (host-3) asks for node3's resource: 302 to 192.168.35.12:8001.
    local out code location ms
    t0=$(now)
    out=$(lan_curl -i "$n2/api/node/resources/$id3" | tr -d '\r')
    ms=$(since_ms "$t0")
    code=$(head -n 1 <<<"$out" | awk '{ print $2 }')
    location=$(grep -i '^location:' <<<"$out" | awk '{ print $2 }')
    [[ $code == 302 && $location == http://192.168.35.12:8001/* ]] && ok=1 || ok=0
    result "$ok" "demo node2 -> node3: node2 (host-3) asked for ${id3:0:12}..: $code to $location in $ms ms"

    # node1 (host-2, supernode1) finds a resource registered at supernode2, and downloads it
    # through the 302; its sha256 is its id.
    local file=$STATE/download sum redirects
    t0=$(now)
    code=$(lan_curl -o /dev/null -w '%{http_code}' "$n1/api/node/resources/$id3")
    out=$(lan_curl -L -o "$file" -w '%{http_code} %{num_redirects}' "$n1/api/node/resources/$id3/content")
    ms=$(since_ms "$t0")
    redirects=${out#* }
    sum=$(sha256sum "$file" 2>/dev/null | cut -d' ' -f1)
    [[ $code == 302 && ${out%% *} == 200 && $redirects -ge 1 && $sum == "$id3" ]] && ok=1 || ok=0
    result "$ok" "demo node1 -> supernode2's resource: node1 (host-2) answered $code, the download ${out%% *} after $redirects redirect(s), $(wc -c <"$file" 2>/dev/null || echo 0) bytes, sha256 $([[ $sum == "$id3" ]] && echo matches || echo "DIFFERS ($sum)"), in $ms ms"

    # kill -9 node3's process: systemd starts it again (Restart=on-failure, RestartSec=2), and
    # node3 registers again by itself.
    local pid newpid
    pid=$(unit_prop host-3 superpeer@node3 MainPID)
    t0=$(now)
    sh_in host-3 "kill -9 $pid" 30
    secs=$(wait_for 30 node3_restarted) && ok=1 || ok=0
    newpid=$(unit_prop host-3 superpeer@node3 MainPID)
    local found
    found=$(wait_for 30 registered_again) || ok=0
    status_is 302 "$n2/api/node/resources/$id3" || ok=0
    [[ $newpid != "$pid" && $newpid != 0 ]] || ok=0
    result "$ok" "restart: kill -9 of node3 (PID $pid on host-3): active again as PID $newpid (NRestarts 1) after $secs s (RestartSec=2 s); registered with supernode2 again $found s later, found through node2 (302)"

    # Graceful stop: systemctl stop sends SIGTERM, node3 leaves supernode2 before it exits, so
    # its resource is gone from the index at once (not after the liveness checks, ~10 s).
    local stop_s result_state gone main_status
    t0=$(now)
    sh_in host-3 "systemctl stop superpeer@node3" 60 || true
    stop_s=$(since "$t0")
    t0=$(now)
    code=$(lan_curl -o /dev/null -w '%{http_code}' "$s2/api/supernode/search/$id3")
    ms=$(since_ms "$t0")
    gone=$(lan_curl "$s2/api/supernode/alive" | grep -c '192.168.35.12:8001' || true)
    result_state=$(unit_prop host-3 superpeer@node3 ActiveState)
    main_status=$(unit_prop host-3 superpeer@node3 ExecMainStatus)
    journal=$(sh_in host-1 "journalctl -u superpeer@supernode2 --no-pager -o cat | grep 'node 192.168.35.12:8001 left' | tail -n 1" 30 || true)
    [[ $code == 404 && $gone == 0 && $result_state == inactive && $main_status == 0 && -n $journal ]] && ok=1 || ok=0
    result "$ok" "graceful stop: systemctl stop superpeer@node3 took $stop_s s (unit $result_state, exit status $main_status); right after, supernode2's search for its resource: $code in $ms ms, node3 $([[ $gone == 0 ]] && echo 'no longer' || echo 'STILL') alive; supernode2's journal: ${journal:-no leave logged}"
    [[ $code == 404 ]] || printf '  the search answered: %s\n  supernode1 lists %s\n' "$(lan_curl "$s2/api/supernode/search/$id3")" "$(alive_names "$s1")"

    # systemctl start node3 again, for the reboot below.
    sh_in host-3 "systemctl start superpeer@node3" 60 >/dev/null 2>&1

    # Reboot host-1: the enabled units start at boot, ordered after network-online.target (a
    # start before the address exists fails to bind and shows as a restart), and the nodes
    # register again by themselves (their heartbeat gets a 404 from the empty index).
    local boot_before units_ok=1 udetail=
    boot_before=$(sh_in host-1 'cat /proc/sys/kernel/random/boot_id' 30)
    t0=$(now)
    sh_in host-1 'systemctl reboot' 30 >/dev/null 2>&1
    BOOT_BEFORE=$boot_before
    secs=$(wait_for 300 booted_again host-1) || units_ok=0
    sh_in host-1 'systemctl is-system-running --wait' 300 >/dev/null 2>&1
    for instance in supernode1 supernode2; do
        active=$(sh_in host-1 "systemctl is-active superpeer@$instance" 30)
        restarts=$(unit_prop host-1 "superpeer@$instance" NRestarts)
        [[ $active == active && $restarts == 0 ]] || units_ok=0
        udetail+=" superpeer@$instance $active (restarts $restarts);"
    done
    local back
    # While host-1 was down each node may have failed over to its second supernode: either
    # one will do.
    back=$(wait_for 60 all_alive) || units_ok=0
    code=$(lan_curl -o /dev/null -w '%{http_code}' "$n2/api/node/resources/$id3")
    [[ $code == 302 ]] || units_ok=0
    result "$units_ok" "reboot host-1: up again after $secs s, started at boot:${udetail%;}; the three nodes registered again $back s later (supernode1: $(alive_names "$s1"), supernode2: $(alive_names "$s2")); node2 -> node3: $code"


    summary "$t_all"
    ((FAILED == 0))
}

summary() {
    down >/dev/null 2>&1 || true
    local left=
    ip netns list 2>/dev/null | grep -qw "$NS" && left+=" namespace"
    [[ -d $STATE ]] && left+=" state"
    printf 'vm-test: %d passed, %d failed in %s s; cleaned up:%s\n' "$PASSED" "$FAILED" "$(since "$1")" "${left:- everything}"
}

# --- main -------------------------------------------------------------------------------------

case "${1:-}" in
    image)
        require_root image
        install_tools
        ensure_image
        say "image: $IMAGE.img"
        ;;
    up) up ;;
    down)
        require_root down
        down
        ;;
    status) status ;;
    exec)
        [[ $# -ge 3 ]] || die "usage: vms.sh exec host-N COMMAND..."
        host=$2
        shift 2
        exec_in "$host" -- "$@"
        ;;
    test) test_all ;;
    *) die "usage: vms.sh image|up|status|exec host-N COMMAND...|test|down" ;;
esac
