#!/usr/bin/env bash
# cairn prune against restic prune on the same data: a file tree backed up
# many times while it changes, most snapshots then forgotten (keep the last
# PRUNE_KEEP), and the prune timed: wall time, CPU time (user+sys), peak RSS
# (/usr/bin/time), and the repository size before and after.
#
# Usage:
#   benches/prune.sh                       # table on stdout, progress on stderr
#   PRUNE_TREE_MIB=64 PRUNE_SNAPSHOTS=10 benches/prune.sh   # a quick look
# Settings (environment):
#   PRUNE_TREE_MIB=256      size of the tree (files of 256 KiB to 4 MiB)
#   PRUNE_SNAPSHOTS=40      backups taken; before each, PRUNE_CHURN of the
#                           files are rewritten with new random content
#   PRUNE_CHURN=10          percent of the files rewritten per snapshot
#   PRUNE_KEEP=5            snapshots kept by `forget --keep-last`
#   PRUNE_MAX_UNUSED=10%    repack threshold for both tools
#   PRUNE_WORK=/var/tmp/cairn-prune   scratch space
#   CAIRN_BIN=path          the cairn binary (default: a release build of this
#                           checkout, built by the script)
#
# Comparability: both tools encrypt and compress (restic: repository v2,
# --compression auto); both prune with the same --max-unused; restic's
# prune runs with its default (repack only what the threshold asks for).
# Both see exactly the same tree at every snapshot. cairn's default file
# chunks average 32 KiB and restic's 1 MiB, so cairn has ~30x more blobs to
# track: the figures measure the tools as they are configured by default.
set -euo pipefail
cd "$(dirname "$0")/.."

tree_mib=${PRUNE_TREE_MIB:-256}
snapshots=${PRUNE_SNAPSHOTS:-40}
churn=${PRUNE_CHURN:-10}
keep=${PRUNE_KEEP:-5}
max_unused=${PRUNE_MAX_UNUSED:-10%}
work=${PRUNE_WORK:-/var/tmp/cairn-prune}

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'prune.sh: %s\n' "$*" >&2; exit 1; }
command -v restic >/dev/null || die "restic is needed (apt-get install restic)"
[ -x /usr/bin/time ] || die "/usr/bin/time is needed (apt-get install time)"
command -v python3 >/dev/null || die "python3 is needed"

if [ -z "${CAIRN_BIN:-}" ]; then
    say "building cairn (release)"
    cargo build --release -p cairn
    CAIRN_BIN=$PWD/target/release/cairn
fi
cairn=$CAIRN_BIN

rm -rf "$work"
mkdir -p "$work"
printf 'prune benchmark password\n' >"$work/pw"
export CAIRN_PASSWORD_FILE=$work/pw RESTIC_PASSWORD_FILE=$work/pw
export CAIRN_REPO=$work/repo-cairn CAIRN_CACHE_DIR=$work/cache-cairn
restic_args=(-q -r "$work/repo-restic" --cache-dir "$work/cache-restic")
tree=$work/tree

# gen VERSION: writes the tree as it is at that version (deterministic:
# file f holds the bytes of seed (f, the last version that rewrote it)).
gen() {
    python3 - "$tree" "$tree_mib" "$churn" "$1" <<'PY'
import os, random, sys
root, mib, churn, version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(1)
sizes, total = [], 0
while total < mib << 20:
    s = rng.randrange(256 << 10, 4 << 20)
    sizes.append(s)
    total += s
os.makedirs(root, exist_ok=True)
for f, size in enumerate(sizes):
    last = 0
    for v in range(1, version + 1):
        if random.Random(v * 1000003 + f).randrange(100) < churn:
            last = v
    path = os.path.join(root, f"d{f % 16:02}", f"f{f:05}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    stamp = path + ".v"
    if os.path.exists(stamp) and open(stamp).read() == str(last):
        continue
    data = random.Random(f * 7919 + last).randbytes(size)
    if f % 3 == 0:  # a third compresses
        data = data[: size // 4] * 4
    with open(path, "wb") as out:
        out.write(data)
    with open(stamp, "w") as out:
        out.write(str(last))
PY
}

"$cairn" init -q
restic "${restic_args[@]}" init --repository-version 2 >/dev/null
say "$snapshots backups of a ${tree_mib} MiB tree, ${churn}% of the files rewritten before each"
for v in $(seq 1 "$snapshots"); do
    gen "$v"
    "$cairn" backup -q "$tree"
    restic "${restic_args[@]}" backup --compression auto "$tree" >/dev/null
    printf '.' >&2
done
printf '\n' >&2
"$cairn" forget -q --keep-last "$keep"
restic "${restic_args[@]}" forget --keep-last "$keep" >/dev/null

size() { du -sb "$1" | cut -f1; }
run() {
    local name=$1
    shift
    local before after
    before=$(size "$work/repo-$name")
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
        die "$name prune failed: $(cat "$work/$name.err")"
    after=$(size "$work/repo-$name")
    read -r wall user sys rss <"$work/$name.time"
    awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" -v b="$before" -v a="$after" \
        'BEGIN { printf "%-7s %8.2f %8.2f %10.1f %12.1f %12.1f\n", n, w, u + s, m / 1024, b / 1048576, a / 1048576 }'
}

say "pruning ($snapshots snapshots, keeping $keep)"
printf '%-7s %8s %8s %10s %12s %12s\n' tool wall_s cpu_s rss_MiB repo_MiB_pre repo_MiB_post
run cairn "$cairn" prune -q --max-unused "$max_unused"
run restic restic "${restic_args[@]}" prune --max-unused "$max_unused"
"$cairn" check -q
say "cairn check after prune: clean"
