#!/usr/bin/env bash
# cairn's main job, end to end, on the default local-directory target: build
# the binary, create a repository, back up a directory tree and a disk image
# (block level), change the disk and back it up again (incremental), restore
# everything and check it byte for byte. Needs only the Rust toolchain
# (mkfs.ext4 from e2fsprogs is used for the disk image when present).
#
# Usage: scripts/demo.sh [SOURCE_DIR]   (default /usr/share/doc)
set -euo pipefail
cd "$(dirname "$0")/.."

source_dir=${1:-/usr/share/doc}
[ -d "$source_dir" ] || source_dir=/etc

cargo build --release -p cairn
cairn=$PWD/target/release/cairn
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")
export CAIRN_REPO=$work/repo CAIRN_CACHE_DIR=$work/cache CAIRN_PASSWORD_FILE=$work/password
( umask 077; head -c 24 /dev/urandom | base64 >"$CAIRN_PASSWORD_FILE" )

say() { printf '\n== %s\n' "$*"; }

say "cairn init (repository $CAIRN_REPO)"
"$cairn" init

say "file backup of $source_dir"
"$cairn" backup --tag demo "$source_dir"
say "file backup again (incremental: unchanged files are not read)"
"$cairn" backup --tag demo "$source_dir"
say "restore the files and compare"
"$cairn" restore latest --path "$source_dir" --target "$work/files"
diff -r --no-dereference "$source_dir" "$work/files/${source_dir#/}" >/dev/null
echo "files: restored tree is identical to $source_dir"

say "disk image: 256 MiB"
image=$work/disk.img
if command -v mkfs.ext4 >/dev/null 2>&1; then
    mkfs.ext4 -q -F -d "$source_dir" "$image" 256M 2>/dev/null || mkfs.ext4 -q -F "$image" 256M
    echo "ext4 file system holding $source_dir"
else
    head -c $((128 << 20)) /dev/urandom >"$image"
    truncate -s 256M "$image"
    echo "raw image (mkfs.ext4 not found)"
fi
first=$("$cairn" backup --disk --json "$image" | tee /dev/stderr | sed -n 's/^  "snapshot": "\([0-9a-f]*\)".*/\1/p')
cp --sparse=always "$image" "$work/disk-v1.img"

say "change 64 scattered 4 KiB blocks, back up again"
for i in $(seq 0 63); do
    dd if=/dev/urandom of="$image" bs=4096 count=1 seek=$(( (i * 977 + 5000) % 65536 )) conv=notrunc status=none
done
"$cairn" backup --disk "$image"

say "restore both disk snapshots and compare"
"$cairn" restore latest --path "$image" --disk-to "$work/restored.img" --verify
cmp "$image" "$work/restored.img"
echo "disk: latest snapshot restored byte for byte"
"$cairn" restore "$first" --disk-to "$work/restored-v1.img"
cmp "$work/disk-v1.img" "$work/restored-v1.img"
echo "disk: first snapshot ($first) restored byte for byte"

say "cairn snapshots"
"$cairn" snapshots
du -sh "$CAIRN_REPO" | awk '{print "repository size: " $1}'
echo
echo "everything restored byte for byte; the demo's files are in $work (remove it when done)"
