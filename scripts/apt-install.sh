#!/usr/bin/env bash
# scripts/apt-install.sh PACKAGE...: installs Debian packages (with sudo when not root) without
# letting any of them start a service on installation (nginx would listen on every address,
# port 80): a policy-rc.d that refuses every start is in place for the time of the install.
# Used by .ci/run, make bench and make attack.
set -euo pipefail
(($#)) || exit 0
sudo=()
((EUID == 0)) || sudo=(sudo)
policy=/usr/sbin/policy-rc.d
made=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made=1
fi
remove_policy() {
    if ((made)); then
        "${sudo[@]}" rm -f "$policy"
    fi
}
trap remove_policy EXIT
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
