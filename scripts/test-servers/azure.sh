#!/usr/bin/env bash
# Azure Blob Storage for cairn's tests, on 127.0.0.1: Microsoft's emulator
# Azurite (npm `azurite`, pinned), in memory, with the container the tests use.
#
#   scripts/test-servers/azure.sh install   # idempotent; into ~/.cache/cairn-test-servers
#   scripts/test-servers/azure.sh start     # install if needed, start, wait, create the container, print env
#   scripts/test-servers/azure.sh env       # print the env of the running server
#   scripts/test-servers/azure.sh stop
#
# `eval "$(scripts/test-servers/azure.sh start)"` exports CAIRN_TEST_AZURE_*.
set -euo pipefail
. "$(dirname "$0")/common.sh"

AZURITE_VERSION=3.35.0
PREFIX=$SERVERS_DIR/azurite-$AZURITE_VERSION
RUN=$SERVERS_DIR/run-azure
CONTAINER=cairn-test
ACCOUNT=devstoreaccount1
# Azurite's well-known development key (public; it protects nothing).
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
mkdir -p "$RUN"

install() {
    if [ -x "$PREFIX/node_modules/.bin/azurite-blob" ]; then
        return 0
    fi
    echo "installing azurite@$AZURITE_VERSION into $PREFIX" >&2
    mkdir -p "$PREFIX"
    echo '{"private": true}' >"$PREFIX/package.json"
    (cd "$PREFIX" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2)
}

print_env() {
    local port
    port=$(cat "$RUN/port")
    echo "export CAIRN_TEST_AZURE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$ACCOUNT;AccountKey=$KEY;BlobEndpoint=http://127.0.0.1:$port/$ACCOUNT;'"
    echo "export CAIRN_TEST_AZURE_CONTAINER=$CONTAINER"
}

start() {
    install
    if ! alive "$RUN/pid"; then
        launch
    fi
    ensure_bucket
    print_env
}

launch() {
    local port
    port=$(free_port)
    echo "$port" >"$RUN/port"
    setsid "$PREFIX/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
        --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --silent \
        >"$RUN/log" 2>&1 </dev/null &
    echo $! >"$RUN/pid"
    if ! wait_port "$port" 60; then
        echo "azurite-blob did not start on port $port; its log:" >&2
        tail -n 30 "$RUN/log" >&2
        stop_pid "$RUN/pid"
        exit 1
    fi
    echo "Azurite blob service on 127.0.0.1:$port (pid $(cat "$RUN/pid")), container $CONTAINER" >&2
}

ensure_bucket() {
    # Create the container: one Shared Key signed request (Azure's REST API).
    python3 - "$(cat "$RUN/port")" "$ACCOUNT" "$KEY" "$CONTAINER" <<'PY' >&2
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
port, account, key, container = sys.argv[1:5]
date, version = formatdate(usegmt=True), "2021-08-06"
to_sign = "\n".join(["PUT"] + [""] * 4 + ["application/octet-stream"] + [""] * 6 + [
    f"x-ms-date:{date}", f"x-ms-version:{version}",
    f"/{account}/{account}/{container}", "restype:container"])
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT", data=b"",
    headers={"x-ms-date": date, "x-ms-version": version, "Content-Type": "application/octet-stream",
             "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req).close()
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: ContainerAlreadyExists
        sys.exit(f"creating container {container} failed: {e.code} {e.read()[:300]!r}")
PY
}

case "${1:-}" in
install) install ;;
start) start ;;
env)
    alive "$RUN/pid" || { echo "the Azure test server is not running; run $0 start" >&2; exit 1; }
    print_env
    ;;
stop) stop_pid "$RUN/pid" ;;
*)
    echo "usage: $0 install|start|env|stop" >&2
    exit 2
    ;;
esac
