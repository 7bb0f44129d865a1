#!/usr/bin/env bash
# Static checks of machine/ (no VM, no network):
#   ruby -c Vagrantfile, bash -n and shellcheck of provision.sh and vms.sh, qga.py parses,
#   systemd-analyze verify of the unit template (as the instance superpeer@check).
# A tool that is not installed is skipped with a message (apt-get install ruby shellcheck systemd).
# Exit status 1 when a check that ran failed, else 0.   Usage: bash machine/check.sh
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failed=0
ran=0
skipped=0

check() { # name command...
    local name=$1
    shift
    ran=$((ran + 1))
    if output=$("$@" 2>&1); then
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$name"
    fi
    [[ -z $output ]] || printf '%s\n' "$output" | sed 's/^/      /'
}

skip() {
    skipped=$((skipped + 1))
    printf 'skip  %s\n' "$*"
}

if command -v ruby >/dev/null 2>&1; then
    check "ruby -c Vagrantfile" ruby -c "$here/Vagrantfile"
else
    skip "ruby -c Vagrantfile: ruby is not installed"
fi

check "bash -n provision.sh" bash -n "$here/provision.sh"

check "bash -n vms.sh" bash -n "$here/vms.sh"

if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck provision.sh" shellcheck "$here/provision.sh"
    check "shellcheck vms.sh" shellcheck -x "$here/vms.sh"
else
    skip "shellcheck provision.sh vms.sh: shellcheck is not installed"
fi

if command -v python3 >/dev/null 2>&1; then
    check "python3 qga.py (compiles)" python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$here/qga.py"
else
    skip "qga.py: python3 is not installed"
fi

# systemd-analyze verify needs an instance, not a template, and checks that ExecStart's binary
# exists: verify a copy named superpeer@check.service under a scratch --root holding the system's
# own units, a stand-in /usr/local/bin/superpeer and the paths the unit names, so the unit is
# checked as written. Warnings (unknown keys, bad values) only print: any output fails the check.
verify_unit() {
    local root status out
    root=$(mktemp -d) || return 1
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin" \
        "$root/etc/superpeer" "$root/var/lib/superpeer"
    cp -R /usr/lib/systemd/system "$root/usr/lib/systemd/"
    cp "$here/superpeer@.service" "$root/etc/systemd/system/superpeer@check.service"
    printf '#!/bin/sh\n' >"$root/usr/local/bin/superpeer"
    chmod 0755 "$root/usr/local/bin/superpeer"
    : >"$root/etc/superpeer/check.env"
    # --man=no: the Documentation= file only exists in the VM.
    out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no --root="$root" \
        "$root/etc/systemd/system/superpeer@check.service" 2>&1)
    status=$?
    rm -rf "$root"
    [[ -z $out ]] || printf '%s\n' "$out"
    [[ $status -eq 0 && -z $out ]]
}

if command -v systemd-analyze >/dev/null 2>&1; then
    if ! [[ -d /usr/lib/systemd/system ]]; then
        skip "systemd-analyze verify: no /usr/lib/systemd/system to verify against"
    elif systemd-analyze --help 2>/dev/null | grep -q -- '--root'; then
        check "systemd-analyze verify superpeer@.service" verify_unit
    else
        skip "systemd-analyze verify: this systemd-analyze has no --root"
    fi
else
    skip "systemd-analyze verify superpeer@.service: systemd is not installed"
fi

printf 'machine: %d passed, %d failed, %d skipped\n' "$((ran - failed))" "$failed" "$skipped"
((failed == 0))
