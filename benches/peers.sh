#!/usr/bin/env bash
# cairn against restic and borg (Debian's packages), side by side in one run,
# on a generated disk image holding a real ext4 file system and on the file
# tree inside it: first full backup, incremental after churn, unchanged
# incremental, full restore. Wall time, CPU time (user+sys), peak RSS and the
# repository size after every step; for the disk incremental, the bytes the
# repository grew by against the 4 KiB blocks that really changed; and the
# disk's own read time of the image (dd, direct reads), the floor under any
# unchanged disk incremental.
#
# Usage (as root: it installs packages and drops the page cache):
#   benches/peers.sh                 # tables on stdout, progress on stderr
#   PEERS_IMAGE_MIB=512 PEERS_REPS=1 benches/peers.sh   # a quick check
# A default run takes 11-15 minutes on 2 cores (the first one also spends
# about 90 s generating the data, which later runs reuse).
# Settings (environment):
#   PEERS_IMAGE_MIB=2048     disk image size; the file tree is 40% of it
#   PEERS_REPS=3             repetitions; the report gives medians
#   PEERS_CHURN_BLOCKS_PER_GIB=2000   scattered 4 KiB rewrites in the image
#   PEERS_TOOLS="cairn restic borg"   a subset for quick looks
#   PEERS_DATASETS="disk tree"        likewise
#   PEERS_WORK=/var/tmp/cairn-peers   scratch space (about 4x the image)
#   PEERS_DROP_CACHES=1      drop the page cache before every step (0: warm)
#   PEERS_VERIFY=first       check restores byte for byte: first|all|none rep
#   PEERS_RESULTS=$PEERS_WORK/results.json   raw figures and medians
#   PEERS_REGEN=0            1: regenerate the data even if it is cached
#   (PEERS_REPS=0 only generates the data: its hashes show it is deterministic)
#
# Comparability (why each option):
# - Encryption on everywhere: cairn always encrypts; restic always encrypts
#   (its key file is the "repokey" equivalent); borg `-e repokey-blake2`
#   (AES-256-CTR, BLAKE2b-256 for the MAC and the chunk ids).
# - Compression zstd near level 3 everywhere: cairn's default (zstd 3);
#   borg `-C zstd,3`; restic `--compression auto` on a version 2 repository
#   (zstd at its "default" speed, about level 3; 0.14 has no level option).
# - Disk images: a block device has no mtime to trust, and cairn --disk
#   always reads the whole disk. restic and borg would skip an unchanged image
#   *file* by its metadata, which they cannot do on a device, so they are made
#   to read it: restic `--force`, borg `--files-cache=disabled`. File trees use
#   every tool's default change detection.
# - Chunk sizes are each tool's default (cairn 16 KiB average on disks and
#   32 KiB on files, restic 1 MiB, borg 2 MiB).
# - Every timed command ends with `sync`, so a tool is charged for the writes
#   it leaves in the page cache (restores especially). Restores of the image:
#   cairn and borg (`--sparse`) leave holes; restic 0.14 has no sparse restore
#   and writes the zeros.
# - Tool order rotates between repetitions so no tool always runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
src_root=$PWD
gen=$src_root/benches/peers/gen.py

image_mib=${PEERS_IMAGE_MIB:-2048}
reps=${PEERS_REPS:-3}
blocks_per_gib=${PEERS_CHURN_BLOCKS_PER_GIB:-2000}
read -r -a tools <<<"${PEERS_TOOLS:-cairn restic borg}"
read -r -a datasets <<<"${PEERS_DATASETS:-disk tree}"
work=${PEERS_WORK:-/var/tmp/cairn-peers}
drop=${PEERS_DROP_CACHES:-1}
verify=${PEERS_VERIFY:-first}
results=${PEERS_RESULTS:-$work/results.json}
regen=${PEERS_REGEN:-0}

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'peers.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (package installs, dropping the page cache)"
umask 022

# ---------------------------------------------------------------- tools

need=()
command -v restic >/dev/null || need+=(restic)
command -v borg >/dev/null || need+=(borgbackup)
[ -x /usr/bin/time ] || need+=(time)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi

say "building cairn (release)"
cargo build --release -p cairn
cairn=$src_root/target/release/cairn

restic_version=$(restic version | sed -n 1p)
borg_version=$(borg --version)
cairn_version="$("$cairn" --version) ($(git -C "$src_root" describe --always --dirty 2>/dev/null || echo unknown))"
printf '%s\n%s\n%s\n' "$cairn_version" "$restic_version" "$borg_version" >&2

# Dropping the page cache makes every step read its input and repository
# from the disk, as a backup of a VM that has been running a while would. A
# container may refuse it; then every step runs warm, and the report says so.
if [ "$drop" = 1 ] && ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    echo "cannot drop the page cache here: every step runs warm" >&2
    drop=0
fi
drop_caches() {
    sync
    if [ "$drop" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# ---------------------------------------------------------------- data

data=$work/data
image=$data/disk.img
tree=$data/tree
image_bytes=$((image_mib << 20))
# The tree is 40% of the image and the deleted data 20%: a disk 60% used,
# and a default run (3 repetitions at 2 GiB) that stays under 20 minutes.
tree_pct=40
filler_pct=20
tree_bytes=$((image_bytes * tree_pct / 100))
# The generated data depends only on the sizes, the generator and /usr, so
# it is kept between runs; the stamp says which settings made it.
stamp="image_mib=$image_mib blocks_per_gib=$blocks_per_gib tree_pct=$tree_pct filler_pct=$filler_pct gen=$(sha256sum <"$gen" | cut -c1-16)"
fs_uuid=6a3e0c52-1f0b-4c7e-9d2a-5b8f3e1c0a77
# mke2fs and debugfs take "now" from this variable: the image's timestamps,
# and so its bytes, do not depend on when it was made.
export E2FSPROGS_FAKE_TIME=1700000000

if [ "$regen" = 1 ] || [ "$(cat "$data/stamp" 2>/dev/null)" != "$stamp" ]; then
    say "generating a ${image_mib} MiB ext4 image and a $((tree_bytes >> 20)) MiB file tree in $data"
    gen_started=$SECONDS
    rm -rf "$data"
    mkdir -p "$data"
    # The tree: system files copied from /usr (real, partly compressible),
    # a database of 4 KiB pages, media-like random files and logs; plus its
    # churn (modified and added files) and the originals to undo it.
    python3 "$gen" tree "$tree" "$data/tree-patch" "$data/tree-orig" "$tree_bytes"
    # The image: ext4 holding the tree. A file of 20% of the image is then
    # written and deleted, so free space holds old data as on a used disk
    # rather than only zeros (old system files, logs, database pages); the
    # rest of the free space stays zero.
    # (cairn skips all-zero chunks; the peers compress them to nearly nothing
    # but still read and chunk them.)
    mkfs.ext4 -q -F -b 4096 -U "$fs_uuid" -E "hash_seed=$fs_uuid,root_owner=0:0" \
        -d "$tree" "$image" "${image_mib}M" >&2
    python3 "$gen" fixctime "$image" "$tree"
    python3 "$gen" filler "$data/filler" $((image_bytes * filler_pct / 100))
    debugfs -w -R "write $data/filler /filler" "$image" >/dev/null 2>&1
    debugfs -w -R "rm /filler" "$image" >/dev/null 2>&1
    rm -f "$data/filler"

    # The disk churn, made once on a copy and kept as block patches: a log
    # file grows (rewritten through debugfs with 1 MiB per GiB appended),
    # then scattered 4 KiB rewrites of file data (database pages, swap-like
    # writes) at seeded offsets.
    cp --sparse=always "$image" "$data/disk1.img"
    python3 "$gen" grow "$tree/var/log/app-0.log" "$data/grown.log" $((image_bytes >> 10))
    printf 'rm /var/log/app-0.log\nwrite %s /var/log/app-0.log\n' "$data/grown.log" >"$data/grow.cmds"
    debugfs -w -f "$data/grow.cmds" "$data/disk1.img" >/dev/null 2>&1
    rm -f "$data/grown.log" "$data/grow.cmds"
    grow_blocks=$(python3 "$gen" blockdiff "$image" "$data/disk1.img" /dev/null /dev/null)
    python3 "$gen" scatter "$data/disk1.img" "$tree" $((blocks_per_gib * image_mib / 1024)) >&2
    # Counting the 4 KiB blocks that differ is the reference for "bytes
    # stored" of the disk incremental.
    changed_blocks=$(python3 "$gen" blockdiff "$image" "$data/disk1.img" "$data/disk.fwd" "$data/disk.rev")
    fsck_result=$(e2fsck -fn "$data/disk1.img" >/dev/null 2>&1 && echo clean || echo "not clean")
    sha0=$(sha256sum <"$image" | cut -d' ' -f1)
    sha1=$(sha256sum <"$data/disk1.img" | cut -d' ' -f1)
    rm -f "$data/disk1.img"
    tree_files=$(find "$tree" -type f | wc -l)
    tree_size=$(du -sb "$tree" | cut -f1)
    patch_files=$(find "$data/tree-patch" -type f | wc -l)
    patch_size=$(du -sb "$data/tree-patch" | cut -f1)
    image_used=$(du -B1 "$image" | cut -f1)
    cat >"$data/meta.env" <<EOF
grow_blocks=$grow_blocks
changed_blocks=$changed_blocks
fsck_result='$fsck_result'
sha0=$sha0
sha1=$sha1
tree_files=$tree_files
tree_size=$tree_size
patch_files=$patch_files
patch_size=$patch_size
image_used=$image_used
EOF
    echo "$stamp" >"$data/stamp"
    echo "generated in $((SECONDS - gen_started)) s" >&2
fi
# shellcheck source=/dev/null
. "$data/meta.env"
printf 'image %s MiB (%s bytes allocated, sha256 %s), churn: %s changed 4 KiB blocks (%s from the grown log), after churn e2fsck: %s\n' \
    "$image_mib" "$image_used" "${sha0:0:16}" "$changed_blocks" "$grow_blocks" "$fsck_result" >&2
printf 'tree %s files, %s bytes; churn: %s files modified or added (%s bytes)\n' \
    "$tree_files" "$tree_size" "$patch_files" "$patch_size" >&2

# ---------------------------------------------------------------- runs

password=$work/password
echo "cairn-peers-benchmark" >"$password"
export CAIRN_PASSWORD_FILE=$password RESTIC_PASSWORD_FILE=$password
export BORG_PASSPHRASE=cairn-peers-benchmark BORG_BASE_DIR=$work/borg-base
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
logs=$work/logs
out=$work/out
raw=$work/raw.tsv
rm -rf "$logs" "$out"
mkdir -p "$logs"
printf 'rep\ttool\tdataset\tstep\twall_s\tuser_s\tsys_s\tmax_rss_kib\trepo_bytes\tstdout\n' >"$raw"

# measure REP TOOL DATASET STEP REPO COMMAND...: one timed step, after
# dropping the page cache; the command and a final sync run under
# /usr/bin/time (peak RSS is the largest of the processes it waited for).
measure() {
    local rep=$1 tool=$2 dataset=$3 step=$4 repo=$5
    shift 5
    local base=$logs/$rep-$tool-$dataset-$step wall user sys rss size
    drop_caches
    if ! /usr/bin/time -f '%e %U %S %M' -o "$base.time" sh -c '"$@" && sync' sh "$@" \
        >"$base.out" 2>"$base.err"; then
        tail -n 20 "$base.err" >&2
        die "$tool $dataset $step failed (rep $rep): $*"
    fi
    read -r wall user sys rss <"$base.time"
    size=$(du -sb "$repo" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$rep" "$tool" "$dataset" "$step" "$wall" "$user" "$sys" "$rss" "$size" "$base.out" >>"$raw"
    awk -v r="$rep" -v t="$tool" -v d="$dataset" -v s="$step" -v w="$wall" -v u="$user" -v y="$sys" \
        -v m="$rss" -v z="$size" 'BEGIN { printf "  rep %s %-6s %-4s %-7s %7.2fs wall %7.2fs cpu %6d MiB rss  repo %7.1f MiB\n", r, t, d, s, w, u + y, m / 1024, z / 1048576 }' >&2
}

# Per tool: prepare a repository (untimed), back up, restore.
repo_init() {
    local tool=$1 repo=$2
    rm -rf "$repo" "$work/cache-$tool" "$BORG_BASE_DIR"
    case $tool in
    cairn) CAIRN_REPO=$repo CAIRN_CACHE_DIR=$work/cache-cairn "$cairn" init -q ;;
    restic) restic -q -r "$repo" --cache-dir "$work/cache-restic" init --repository-version 2 >/dev/null ;;
    borg) borg init -e repokey-blake2 "$repo" 2>/dev/null ;;
    esac
}

# backup_cmd TOOL REPO KIND(disk|tree) STEP SOURCE: the command, as words.
backup_cmd() {
    local tool=$1 repo=$2 kind=$3 step=$4 src=$5
    case $tool/$kind in
    cairn/disk) cmd=(env CAIRN_REPO="$repo" CAIRN_CACHE_DIR="$work/cache-cairn" "$cairn" backup --disk --json "$src") ;;
    cairn/tree) cmd=(env CAIRN_REPO="$repo" CAIRN_CACHE_DIR="$work/cache-cairn" "$cairn" backup --json "$src") ;;
    restic/disk) cmd=(restic -q -r "$repo" --cache-dir "$work/cache-restic" backup --compression auto --force "$src") ;;
    restic/tree) cmd=(restic -q -r "$repo" --cache-dir "$work/cache-restic" backup --compression auto "$src") ;;
    borg/disk) cmd=(borg create -C "zstd,3" --files-cache=disabled "$repo::$kind-$step" "$src") ;;
    borg/tree) cmd=(borg create -C "zstd,3" "$repo::$kind-$step" "$src") ;;
    esac
}

# restore_cmd TOOL REPO KIND DEST: restores the latest snapshot; files land
# at DEST/<source path without its leading slash> for every tool.
restore_cmd() {
    local tool=$1 repo=$2 kind=$3 dest=$4
    # shellcheck disable=SC2016 # borg's arguments expand in the inner sh
    case $tool/$kind in
    cairn/disk) cmd=(env CAIRN_REPO="$repo" CAIRN_CACHE_DIR="$work/cache-cairn" "$cairn" restore latest --json --disk-to "$dest/${image#/}") ;;
    cairn/tree) cmd=(env CAIRN_REPO="$repo" CAIRN_CACHE_DIR="$work/cache-cairn" "$cairn" restore latest --json --target "$dest") ;;
    restic/*) cmd=(restic -q -r "$repo" --cache-dir "$work/cache-restic" restore latest --target "$dest") ;;
    borg/disk) cmd=(sh -c 'cd "$1" && borg extract --sparse "$2"' sh "$dest" "$repo::$kind-same") ;;
    borg/tree) cmd=(sh -c 'cd "$1" && borg extract "$2"' sh "$dest" "$repo::$kind-same") ;;
    esac
}

# One dataset for one tool: full, churn, unchanged, restore; the churn is
# undone afterwards so the next tool starts from the same bytes.
run_dataset() {
    local rep=$1 tool=$2 kind=$3
    local repo=$work/repos/$tool-$kind src check
    local cmd=()
    if [ "$kind" = disk ]; then src=$image; else src=$tree; fi
    repo_init "$tool" "$repo"
    backup_cmd "$tool" "$repo" "$kind" full "$src"
    measure "$rep" "$tool" "$kind" full "$repo" "${cmd[@]}"
    if [ "$kind" = disk ]; then
        python3 "$gen" patch "$image" "$data/disk.fwd"
    else
        python3 "$gen" apply "$tree" "$data/tree-patch"
    fi
    backup_cmd "$tool" "$repo" "$kind" churn "$src"
    measure "$rep" "$tool" "$kind" churn "$repo" "${cmd[@]}"
    backup_cmd "$tool" "$repo" "$kind" same "$src"
    measure "$rep" "$tool" "$kind" same "$repo" "${cmd[@]}"
    rm -rf "$out"
    mkdir -p "$out"
    mkdir -p "$out/${image%/*}"
    restore_cmd "$tool" "$repo" "$kind" "$out"
    measure "$rep" "$tool" "$kind" restore "$repo" "${cmd[@]}"
    check=0
    case $verify in all) check=1 ;; first) [ "$rep" = 1 ] && check=1 ;; esac
    if [ "$check" = 1 ]; then
        if [ "$kind" = disk ]; then
            [ "$(sha256sum <"$out/${image#/}" | cut -d' ' -f1)" = "$sha1" ] ||
                die "$tool: the restored image differs from the churned image"
        else
            diff -r --no-dereference "$tree" "$out/${tree#/}" >/dev/null ||
                die "$tool: the restored tree differs from the source"
        fi
        echo "  rep $rep $tool $kind: restore verified byte for byte" >&2
    fi
    rm -rf "$out"
    if [ "$kind" = disk ]; then
        python3 "$gen" patch "$image" "$data/disk.rev"
    else
        python3 "$gen" revert "$tree" "$data/tree-patch" "$data/tree-orig"
    fi
    # The repository is kept only until the next repetition needs the room.
    rm -rf "$repo"
}

[ "$(sha256sum <"$image" | cut -d' ' -f1)" = "$sha0" ] || die "$image is not the generated image; rerun with PEERS_REGEN=1"
started=$(date +%s)
for ((rep = 1; rep <= reps; rep++)); do
    # Rotate the order of the tools: rep 1 cairn first, rep 2 second...
    order=()
    for ((i = 0; i < ${#tools[@]}; i++)); do
        order+=("${tools[(i + rep - 1) % ${#tools[@]}]}")
    done
    say "repetition $rep of $reps: ${order[*]}"
    # The disk's own speed: the whole image read once with direct 4 MiB
    # reads (holes cost no I/O). No tool's unchanged disk incremental can
    # take less, so restic's time over this bounds any speed-up over it.
    measure "$rep" floor disk read /dev/null dd if="$image" of=/dev/null bs=4M iflag=direct status=none
    for tool in "${order[@]}"; do
        for kind in "${datasets[@]}"; do
            run_dataset "$rep" "$tool" "$kind"
        done
    done
done
elapsed=$(($(date +%s) - started))

# ---------------------------------------------------------------- report

mkdir -p "$(dirname "$results")"
python3 "$src_root/benches/peers/report.py" "$raw" "$results" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "machine=$(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GiB" \
    "cairn=$cairn_version" "restic=$restic_version" "borg=$borg_version" \
    "image_mib=$image_mib" "image_allocated_bytes=$image_used" \
    "tree_bytes=$tree_size" "tree_files=$tree_files" \
    "tree_churn_files=$patch_files" "tree_churn_bytes=$patch_size" \
    "changed_blocks=$changed_blocks" "grow_blocks=$grow_blocks" \
    "scattered_blocks_requested=$((blocks_per_gib * image_mib / 1024))" \
    "reps=$reps" "page_cache_dropped=$drop" "seconds_total=$elapsed" \
    "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw figures and medians: $results" >&2
