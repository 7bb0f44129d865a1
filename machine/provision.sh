#!/usr/bin/env bash
# provision.sh HOST: installs superpeer on one VM of machine/Vagrantfile (run as root by Vagrant).
#
#   host-1 -> supernode1 (192.168.35.10:5000) and supernode2 (192.168.35.10:5001)
#   host-2 -> node1      (192.168.35.11:8000)
#   host-3 -> node2      (192.168.35.12:8000) and node3 (192.168.35.12:8001)
#
# Installs the static binary from $SUPERPEER_SRC/dist/superpeer (built on the host by `make dist`;
# nothing is compiled here), the configs of machine/config/ into /etc/superpeer/, this host's
# node resources into /var/lib/superpeer/resources/<node>/, the systemd template unit
# superpeer@.service (one enabled instance per config on this host), the shell aliases
# run-super1 ... run-node3 (/etc/profile.d/superpeer.sh) and ~vagrant/code/Makefile.
# Running it again brings everything up to date and restarts this host's instances.
#
# Environment: SUPERPEER_SRC (default /vagrant, the synced project folder),
# SUPERPEER_AUTOSTART (default yes; "no" leaves the instances disabled and stopped, for running
# them by hand as in the seed), SUPERPEER_VM_USER (default vagrant: who gets ~/code/Makefile).
set -euo pipefail

SRC=${SUPERPEER_SRC:-/vagrant}
AUTOSTART=${SUPERPEER_AUTOSTART:-yes}
VM_USER=${SUPERPEER_VM_USER:-vagrant}

BIN=/usr/local/bin/superpeer
ETC_DIR=/etc/superpeer
STATE_DIR=/var/lib/superpeer
UNIT_DIR=/etc/systemd/system
PROFILE=/etc/profile.d/superpeer.sh
SERVICE_USER=superpeer

log() { printf 'provision: %s\n' "$*"; }
warn() { printf 'provision: warning: %s\n' "$*" >&2; }
die() {
    printf 'provision: error: %s\n' "$*" >&2
    exit 1
}

usage="usage: provision.sh host-1|host-2|host-3"
[[ $# -eq 1 ]] || die "$usage"
host=$1
case "$host" in
    host-1) instances=(supernode1 supernode2) ;;
    host-2) instances=(node1) ;;
    host-3) instances=(node2 node3) ;;
    *) die "unknown host '$host'; $usage" ;;
esac

case "${AUTOSTART,,}" in
    yes | true | 1 | on) autostart=1 ;;
    no | false | 0 | off) autostart=0 ;;
    *) die "SUPERPEER_AUTOSTART must be yes or no, not '$AUTOSTART'" ;;
esac

[[ $EUID -eq 0 ]] || die "must run as root"
[[ -d $SRC ]] || die "$SRC (the synced project folder) does not exist"

log "$host: instances ${instances[*]}"

# --- the binary -------------------------------------------------------------------------------
if [[ ! -f $SRC/dist/superpeer ]]; then
    die "$SRC/dist/superpeer is missing: run make dist first (on the host, in the project root), then 'vagrant rsync && vagrant provision' in machine/"
fi
# Copy beside the target and rename over it, so a running instance's binary is never overwritten.
install -m 0755 -o root -g root "$SRC/dist/superpeer" "$BIN.new"
if ! version=$("$BIN.new" --version 2>&1); then
    rm -f "$BIN.new"
    die "$SRC/dist/superpeer does not run here ($version): rebuild it with make dist (a static musl x86_64 binary)"
fi
mv -f "$BIN.new" "$BIN"
log "installed $BIN ($version)"

# --- tools for the seed's workflow (make) and the demo (curl) ----------------------------------
missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- the service account -----------------------------------------------------------------------
if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "superpeer network instances" "$SERVICE_USER"
    log "created system user $SERVICE_USER"
fi

# --- configs -----------------------------------------------------------------------------------
# All of them on every host (they are small and the aliases name them all); read-only for
# everyone but root, readable by the service and by the vagrant user running an alias.
install -d -m 0755 -o root -g root "$ETC_DIR"
shopt -s nullglob
configs=("$SRC"/machine/config/*.env)
shopt -u nullglob
((${#configs[@]})) || die "no $SRC/machine/config/*.env to install"
install -m 0644 -o root -g root "${configs[@]}" "$ETC_DIR/"
for instance in "${instances[@]}"; do
    [[ -f $ETC_DIR/$instance.env ]] || die "$ETC_DIR/$instance.env missing (machine/config/$instance.env)"
done
log "installed ${#configs[@]} configs into $ETC_DIR"

# --- resources of this host's nodes ------------------------------------------------------------
install -d -m 0755 -o root -g root "$STATE_DIR" "$STATE_DIR/resources"
for instance in "${instances[@]}"; do
    [[ $instance == node* ]] || continue
    from=$SRC/resources/$instance
    to=$STATE_DIR/resources/$instance
    rm -rf "$to.new"
    if [[ -d $from ]]; then
        # -L: the node serves plain files, never links pointing back into /vagrant.
        cp -RL "$from" "$to.new"
    else
        warn "$from does not exist: $instance starts with no resources"
        mkdir "$to.new"
    fi
    # Read-only data for the service: owned by root, readable by all.
    chown -R root:root "$to.new"
    chmod -R u=rwX,go=rX "$to.new"
    rm -rf "$to"
    mv "$to.new" "$to"
    log "installed $(find "$to" -type f | wc -l) resources into $to"
done

# --- systemd -----------------------------------------------------------------------------------
install -m 0644 -o root -g root "$SRC/machine/superpeer@.service" "$UNIT_DIR/superpeer@.service"
systemctl daemon-reload

# --- the seed's aliases: run an instance in the foreground -------------------------------------
# Each alias first stops that instance's service (it holds the port), then runs it in the
# terminal; `sudo systemctl start superpeer@NAME` hands it back to systemd afterwards.
cat >"$PROFILE" <<'EOF'
# superpeer (installed by machine/provision.sh): run an instance in the foreground, as in the
# seed's demo. Each alias stops the systemd instance of the same name first (it holds the port);
# `sudo systemctl start superpeer@NAME` gives it back to systemd. Logs: journalctl -u superpeer@NAME
alias run-super1='sudo -n systemctl stop superpeer@supernode1 2>/dev/null; superpeer supernode --config /etc/superpeer/supernode1.env'
alias run-super2='sudo -n systemctl stop superpeer@supernode2 2>/dev/null; superpeer supernode --config /etc/superpeer/supernode2.env'
alias run-node1='sudo -n systemctl stop superpeer@node1 2>/dev/null; superpeer node --config /etc/superpeer/node1.env'
alias run-node2='sudo -n systemctl stop superpeer@node2 2>/dev/null; superpeer node --config /etc/superpeer/node2.env'
alias run-node3='sudo -n systemctl stop superpeer@node3 2>/dev/null; superpeer node --config /etc/superpeer/node3.env'
EOF
chmod 0644 "$PROFILE"
log "installed aliases into $PROFILE"

# --- ~/code/Makefile for `make r-super` / `make r-node` ------------------------------------------
if home=$(getent passwd "$VM_USER" | cut -d: -f6) && [[ -n $home && -d $home ]]; then
    install -d -m 0755 -o "$VM_USER" -g "$VM_USER" "$home/code"
    install -m 0644 -o "$VM_USER" -g "$VM_USER" "$SRC/machine/Makefile.vm" "$home/code/Makefile"
    log "installed $home/code/Makefile"
else
    warn "no user $VM_USER with a home folder: skipped ~/code/Makefile"
fi

# --- enable and (re)start this host's instances ------------------------------------------------
units=()
for instance in "${instances[@]}"; do
    units+=("superpeer@$instance.service")
done
if ((autostart)); then
    systemctl enable --quiet "${units[@]}"
    # restart, not start: a second provisioning picks up the new binary, configs and resources.
    systemctl restart "${units[@]}"
    sleep 2
    failed=0
    for unit in "${units[@]}"; do
        if systemctl is-active --quiet "$unit"; then
            log "$unit is running"
        else
            failed=1
            warn "$unit is not running; its last log lines:"
            journalctl -u "$unit" -n 20 --no-pager >&2 || true
        fi
    done
    ((failed == 0)) || die "some instances did not start (journalctl -u superpeer@NAME)"
else
    systemctl disable --now --quiet "${units[@]}"
    log "SUPERPEER_AUTOSTART=$AUTOSTART: ${units[*]} installed but disabled and stopped"
fi

log "$host ready"
