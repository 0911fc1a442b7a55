#!/usr/bin/env bash
# Restore locality after months of incrementals, and what `cairn synth` buys.
#
# Makes a raw disk image, backs it up, then takes 30 incremental backups with
# churn between them (scattered 4 KiB rewrites in the used area and data
# growing into free space, benches/synth/churn.py), and measures, with the
# page cache dropped before each restore:
#   - the restore of the first snapshot (a fresh full: sequential packs),
#   - the restore of the last snapshot (fragmented: its chunks are spread over
#     the packs of 31 backups, and changed chunks are patches of older ones),
#   - `cairn synth` of the last snapshot (its time and how much it stored),
#   - the restore of the synthetic snapshot.
# Every restore is checked byte for byte against the image it came from.
#
# Usage (as root: it drops the page cache):
#   benches/synth.sh                       # a table on stdout
#   SYNTH_IMAGE_MIB=256 SYNTH_ROUNDS=5 benches/synth.sh   # a quick look
# Settings (environment):
#   SYNTH_IMAGE_MIB=1024   image size (three quarters of it used at the start)
#   SYNTH_ROUNDS=30        incremental backups after the first
#   SYNTH_SCATTER=1500     4 KiB blocks rewritten per round
#   SYNTH_GROW_MIB=4       MiB of new data per round
#   SYNTH_REPS=3           restores of each snapshot; the table gives medians
#   SYNTH_WORK=/var/tmp/cairn-synth   scratch space (about 4x the image)
#   SYNTH_DROP_CACHES=1    0 keeps the page cache warm
set -euo pipefail
cd "$(dirname "$0")/.."
src_root=$PWD

image_mib=${SYNTH_IMAGE_MIB:-1024}
rounds=${SYNTH_ROUNDS:-30}
scatter=${SYNTH_SCATTER:-1500}
grow_mib=${SYNTH_GROW_MIB:-4}
reps=${SYNTH_REPS:-3}
work=${SYNTH_WORK:-/var/tmp/cairn-synth}
drop=${SYNTH_DROP_CACHES:-1}

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'synth.sh: %s\n' "$*" >&2; exit 1; }
[ "$drop" = 0 ] || [ "$(id -u)" = 0 ] || die "run as root to drop the page cache (or SYNTH_DROP_CACHES=0)"
drop_caches() { sync; if [ "$drop" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi; }

say "building cairn (release)"
cargo build --release -q -p cairn
cairn=$src_root/target/release/cairn

rm -rf "$work"
mkdir -p "$work"
img=$work/disk.img
used=$((image_mib * 1024 * 1024 * 3 / 4))
export CAIRN_REPO=$work/repo CAIRN_PASSWORD_FILE=$work/password
export XDG_CACHE_HOME=$work/cache
printf 'synth-bench-password\n' >"$CAIRN_PASSWORD_FILE"

say "making a ${image_mib} MiB image"
truncate -s "${image_mib}M" "$img"
# The starting content: the used area written as "round 0" growth.
python3 benches/synth/churn.py "$img" 1 0 0 "$used"
"$cairn" init -q
"$cairn" backup -q --disk "$img" --tag round-0
sha256sum <"$img" | cut -d' ' -f1 >"$work/first.sha"
for r in $(seq 1 "$rounds"); do
    python3 benches/synth/churn.py "$img" "$((r + 1))" "$used" "$scatter" "$((grow_mib << 20))"
    "$cairn" backup -q --disk "$img" --tag "round-$r"
done
sha256sum <"$img" | cut -d' ' -f1 >"$work/last.sha"
first=$("$cairn" snapshots --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(min(s, key=lambda x: x["time"])["id"])')
last=$("$cairn" snapshots --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(max(s, key=lambda x: x["time"])["id"])')

# restore NAME SNAPSHOT SHAFILE: median seconds over $reps cold restores
timed_restore() {
    local name=$1 snap=$2 want times=()
    want=$(cat "$3")
    for _ in $(seq 1 "$reps"); do
        rm -f "$work/out.img"
        drop_caches
        local t0 t1
        t0=$(date +%s.%N)
        "$cairn" restore -q "$snap" --disk-to "$work/out.img"
        sync
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc)")
        [ "$(sha256sum <"$work/out.img" | cut -d' ' -f1)" = "$want" ] || die "$name restore differs from the image"
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((reps + 1) / 2))p"
}

repo_bytes() { du -sb "$CAIRN_REPO" | cut -f1; }

say "restoring the first snapshot"
t_first=$(timed_restore first "$first" "$work/first.sha")
say "first: ${t_first} s"
say "restoring the last snapshot (fragmented)"
t_last=$(timed_restore last "$last" "$work/last.sha")
say "last: ${t_last} s"
frag_before=$("$cairn" stats "$last" --json)

say "synth of the last snapshot"
before=$(repo_bytes)
drop_caches
t0=$(date +%s.%N)
"$cairn" synth -q "$last"
t_synth=$(echo "$(date +%s.%N) - $t0" | bc)
grown=$(($(repo_bytes) - before))
synthetic=$("$cairn" snapshots --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(max(s, key=lambda x: x["time"])["id"])')
frag_after=$("$cairn" stats "$synthetic" --json)
say "restoring the synthetic snapshot"
t_synthetic=$(timed_restore synthetic "$synthetic" "$work/last.sha")

python3 - "$t_first" "$t_last" "$t_synth" "$t_synthetic" "$grown" "$frag_before" "$frag_after" <<'PY'
import json, sys
t_first, t_last, t_synth, t_syn = map(float, sys.argv[1:5])
grown = int(sys.argv[5])
before, after = json.loads(sys.argv[6]), json.loads(sys.argv[7])
def frag(s):
    f = s.get("fragmentation") or {}
    return f"{f.get('packs_per_gib', float('nan')):.1f} packs/GiB, read amplification {f.get('read_amplification', float('nan')):.2f}"
size = before.get("restore_size") or before.get("total_size") or 0
print("| restore | median s | vs first full |")
print("|---|---|---|")
print(f"| first snapshot (full) | {t_first:.2f} | 1.00x |")
print(f"| last snapshot, fragmented | {t_last:.2f} | {t_last / t_first:.2f}x |")
print(f"| last snapshot after synth | {t_syn:.2f} | {t_syn / t_first:.2f}x |")
print()
print(f"synth took {t_synth:.2f} s and stored {grown / 2**20:.1f} MiB")
print(f"fragmentation before: {frag(before)}; after: {frag(after)}")
PY
