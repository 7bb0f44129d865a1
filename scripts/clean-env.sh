# shellcheck shell=bash
# Sourced by the scripts that start instances (demo, bench): only what the script sets reaches
# them. No configuration key from the caller's environment (every key of README.md's table),
# and no HTTP proxy between the instances, or for curl (everything stays on this machine).
unset LHOST LPORT IS_SUPERNODE HTTP_WORKERS MAX_BODY_BYTES LOG_LEVEL \
    MULTICAST_LOCATION MULTICAST_GROUP_SIZE MULTICAST_INTERFACE MULTICAST_TTL \
    SEARCH_TIMEOUT_MS SEARCH_RETRY_MS LIVENESS_PERIOD_MS LIVENESS_MISSES \
    HEALTH_TIMEOUT_MS HEALTH_CONCURRENCY SUPERNODE_ENDPOINT RESOURCE_PATH NODE_NAME \
    NODE_LOCATION HEARTBEAT_MS REGISTER_RETRY_MAX_MS SUPERNODE_TIMEOUT_MS \
    http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
