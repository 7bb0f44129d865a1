# shellcheck shell=bash
# Sourced by the scripts that start instances (demo, bench): only what the script sets reaches
# them. No configuration key from the caller's environment (every key config/example.env lists,
# which a unit test keeps complete, and the old name HTTP_READ_TIMEOUT_MS), and no HTTP proxy
# between the instances, or for curl (everything stays on this machine).
# shellcheck disable=SC2046
unset $(sed -n 's/^#\{0,1\}\([A-Z_][A-Z0-9_]*\)=.*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../config/example.env") \
    HTTP_READ_TIMEOUT_MS http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
