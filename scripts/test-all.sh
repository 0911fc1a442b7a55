#!/usr/bin/env bash
# The whole test suite, on a fresh machine: starts the test servers that the
# target tests need on 127.0.0.1 (SFTP: a private OpenSSH sshd; S3: moto;
# Azure: Azurite; each script installs its server on first use), runs
# `cargo test --workspace --release` with CAIRN_REQUIRE_SERVERS=1 (a test
# whose server is missing fails instead of skipping), and stops the servers
# however it ends. Extra arguments go to `cargo test`.
#
# The e2e disk tests also need e2fsprogs (mkfs.ext4, debugfs), installed here
# if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mkfs.ext4 >/dev/null || ! command -v debugfs >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs
fi
# The report test renders cairn's HTML report in headless Chromium.
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

servers=(sftp s3 azure)
stop_servers() {
    for s in "${servers[@]}"; do
        scripts/test-servers/$s.sh stop >/dev/null 2>&1 || true
    done
}
trap stop_servers EXIT
for s in "${servers[@]}"; do
    echo "starting the $s test server" >&2
    # An assignment, unlike eval "$(...)", stops the script if a server fails.
    server_env=$(scripts/test-servers/$s.sh start)
    eval "$server_env"
done
export CAIRN_REQUIRE_SERVERS=1

cargo test --workspace --release "$@"
