#!/usr/bin/env bash
# Backup and restore throughput to each target on loopback, by --transfers.
#
# Starts the test servers (scripts/test-servers: OpenSSH sshd, moto for S3,
# Azurite for Azure) on 127.0.0.1 in private state directories, makes an
# image of random bytes (incompressible, so every byte goes over the wire),
# and for each target and each --transfers value: init a fresh repository,
# `backup --disk` the image, `restore --disk-to` it (page cache dropped first
# when run as root) and compare it byte for byte. Prints a table of MiB/s.
#
# The servers run on the same cores as cairn, so these figures measure the
# client and the emulators together, not a network: read them as "how much
# parallel transfers buy" rather than as what a real service would give.
#
# Usage:
#   benches/targets.sh
# Settings (environment):
#   TARGETS_IMAGE_MIB=256        image size
#   TARGETS_TRANSFERS="1 8"      --transfers values to compare
#   TARGETS_LIST="local sftp s3 azure"
#   TARGETS_WORK=/var/tmp/cairn-targets   scratch space
#   CAIRN_BIN=path               a cairn binary (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
src_root=$PWD

image_mib=${TARGETS_IMAGE_MIB:-256}
transfers_list=${TARGETS_TRANSFERS:-"1 8"}
targets=${TARGETS_LIST:-"local sftp s3 azure"}
work=${TARGETS_WORK:-/var/tmp/cairn-targets}

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'targets.sh: %s\n' "$*" >&2; exit 1; }

if [ -n "${CAIRN_BIN:-}" ]; then
    cairn=$CAIRN_BIN
else
    say "building cairn (release)"
    cargo build --release -q -p cairn
    cairn=$src_root/target/release/cairn
fi

rm -rf "$work"
mkdir -p "$work"
printf 'targets benchmark password\n' >"$work/pw"
export CAIRN_PASSWORD_FILE=$work/pw
export CAIRN_TEST_SERVERS_DIR=${CAIRN_TEST_SERVERS_DIR:-$work/servers}
export CAIRN_TEST_SFTP_DIR=$work/sftp CAIRN_TEST_SFTP_PORT=${TARGETS_SFTP_PORT:-42777}

started=()
stop_servers() {
    for s in "${started[@]}"; do
        scripts/test-servers/$s.sh stop >/dev/null 2>&1 || true
    done
}
trap stop_servers EXIT
for t in $targets; do
    case $t in
    sftp | s3 | azure)
        say "starting the $t test server"
        server_env=$(scripts/test-servers/$t.sh start)
        eval "$server_env"
        started+=("$t")
        ;;
    local) ;;
    *) die "unknown target $t (local, sftp, s3, azure)" ;;
    esac
done

say "making a ${image_mib} MiB image of random bytes"
head -c "$((image_mib << 20))" /dev/urandom >"$work/disk.img"
want=$(sha256sum <"$work/disk.img" | cut -d' ' -f1)

drop_caches() {
    sync
    if [ "$(id -u)" = 0 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# run_target TARGET TRANSFERS: prints "backup_s restore_s"
run_target() {
    local t=$1 n=$2 repo unique t0 t1 t2
    unique=bench-$t-$n-$$-$RANDOM
    case $t in
    local) repo=$work/repo-$unique ;;
    sftp) repo=${CAIRN_TEST_SFTP_URL%/}/$unique ;;
    s3) repo=s3://$CAIRN_TEST_S3_BUCKET/$unique ;;
    azure) repo=azure://$CAIRN_TEST_AZURE_CONTAINER/$unique ;;
    esac
    (
        export CAIRN_REPO=$repo CAIRN_CACHE_DIR=$work/cache-$unique CAIRN_TRANSFERS=$n
        export AWS_ACCESS_KEY_ID=${CAIRN_TEST_S3_ACCESS_KEY_ID:-} AWS_SECRET_ACCESS_KEY=${CAIRN_TEST_S3_SECRET_ACCESS_KEY:-}
        export AWS_REGION=${CAIRN_TEST_S3_REGION:-} CAIRN_S3_ENDPOINT=${CAIRN_TEST_S3_ENDPOINT:-}
        export AZURE_STORAGE_CONNECTION_STRING=${CAIRN_TEST_AZURE_CONNECTION_STRING:-}
        "$cairn" init -q >/dev/null 2>"$work/init.err" || die "init on $t failed: $(cat "$work/init.err")"
        drop_caches
        t0=$(date +%s.%N)
        "$cairn" backup -q --disk "$work/disk.img"
        t1=$(date +%s.%N)
        rm -f "$work/out.img"
        drop_caches
        t1b=$(date +%s.%N)
        "$cairn" restore -q latest --disk-to "$work/out.img"
        sync
        t2=$(date +%s.%N)
        [ "$(sha256sum <"$work/out.img" | cut -d' ' -f1)" = "$want" ] || die "$t restore differs from the image"
        echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1b" | bc)"
    )
}

results=()
for t in $targets; do
    for n in $transfers_list; do
        say "$t, --transfers $n"
        results+=("$t $n $(run_target "$t" "$n")")
    done
done

printf '%s\n' "${results[@]}" | python3 -c '
import sys
mib = float(sys.argv[1])
print("| target | --transfers | backup s | backup MiB/s | restore s | restore MiB/s |")
print("|---|---|---|---|---|---|")
for line in sys.stdin:
    t, n, b, r = line.split()
    b, r = float(b), float(r)
    print(f"| {t} | {n} | {b:.2f} | {mib / b:.0f} | {r:.2f} | {mib / r:.0f} |")
' "$image_mib"
