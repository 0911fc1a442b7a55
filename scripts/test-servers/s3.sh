#!/usr/bin/env bash
# An S3-protocol server for cairn's tests, on 127.0.0.1: moto's server mode
# (PyPI `moto[server]`, pinned), with the bucket the tests use.
#
#   scripts/test-servers/s3.sh install   # idempotent; a venv in ~/.cache/cairn-test-servers
#   scripts/test-servers/s3.sh start     # install if needed, start, wait, create the bucket, print env
#   scripts/test-servers/s3.sh env       # print the env of the running server
#   scripts/test-servers/s3.sh stop
#
# `eval "$(scripts/test-servers/s3.sh start)"` exports CAIRN_TEST_S3_*.
# Why moto and not s3s-fs or MinIO: see docs/targets.md (MinIO cannot be
# installed from the registries here; s3s-fs lets racing create-only writes
# all succeed; moto honours If-None-Match on PutObject and is race-safe).
set -euo pipefail
. "$(dirname "$0")/common.sh"

MOTO_VERSION=5.2.5
VENV=$SERVERS_DIR/moto-$MOTO_VERSION
RUN=$SERVERS_DIR/run-s3
BUCKET=cairn-test
KEY_ID=cairn-test-key
SECRET=cairn-test-secret
mkdir -p "$RUN"

install() {
    if [ -x "$VENV/bin/moto_server" ]; then
        return 0
    fi
    echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
}

print_env() {
    local port
    port=$(cat "$RUN/port")
    echo "export CAIRN_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export CAIRN_TEST_S3_BUCKET=$BUCKET"
    echo "export CAIRN_TEST_S3_ACCESS_KEY_ID=$KEY_ID"
    echo "export CAIRN_TEST_S3_SECRET_ACCESS_KEY=$SECRET"
    echo "export CAIRN_TEST_S3_REGION=us-east-1"
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
    # setsid: its own process group, so stop can end the server and its children.
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN/log" 2>&1 </dev/null &
    echo $! >"$RUN/pid"
    if ! wait_port "$port" 60; then
        echo "moto_server did not start on port $port; its log:" >&2
        tail -n 30 "$RUN/log" >&2
        stop_pid "$RUN/pid"
        exit 1
    fi
    echo "moto S3 server on 127.0.0.1:$port (pid $(cat "$RUN/pid")), bucket $BUCKET" >&2
}

ensure_bucket() {
    AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$SECRET "$VENV/bin/python" - "$(cat "$RUN/port")" "$BUCKET" <<'PY' >&2
import sys, boto3
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY
}

case "${1:-}" in
install) install ;;
start) start ;;
env)
    alive "$RUN/pid" || { echo "the S3 test server is not running; run $0 start" >&2; exit 1; }
    print_env
    ;;
stop) stop_pid "$RUN/pid" ;;
*)
    echo "usage: $0 install|start|env|stop" >&2
    exit 2
    ;;
esac
