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
#   - `cairn synth` of the last snapshot (its time and how much it stored;
#     synth replaces the snapshot, so the fragmented one is restored first),
#   - the restore of the synthetic snapshot,
#   - the restore of a fresh full of the last image, backed up into a second
#     repository: the best layout the same data can have, so "after synth"
#     is compared with it as well as with the first full (which holds less
#     data: the image grows every round).
# Restores are interleaved (one of each per repetition, the first full in
# both phases) so that a noisy machine slows them alike, and each is checked byte for byte against the
# image it came from.
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
#   CAIRN_BIN=path         a cairn binary to use instead of building one
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

if [ -n "${CAIRN_BIN:-}" ]; then
    cairn=$CAIRN_BIN
else
    say "building cairn (release)"
    cargo build --release -q -p cairn
    cairn=$src_root/target/release/cairn
fi

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

# restore_once NAME SNAPSHOT SHAFILE [REPO]: seconds of one cold restore
restore_once() {
    local name=$1 snap=$2 want t0 t1
    want=$(cat "$3")
    rm -f "$work/out.img"
    drop_caches
    t0=$(date +%s.%N)
    CAIRN_REPO=${4:-$CAIRN_REPO} "$cairn" restore -q "$snap" --disk-to "$work/out.img"
    sync
    t1=$(date +%s.%N)
    [ "$(sha256sum <"$work/out.img" | cut -d' ' -f1)" = "$want" ] || die "$name restore differs from the image"
    echo "$t1 - $t0" | bc
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }

repo_bytes() { du -sb "$CAIRN_REPO" | cut -f1; }

frag_before=$("$cairn" stats "$last" --json)
# The fragmented snapshot first: synth replaces it (forgets the original).
a_first=() a_last=() a_syn=() a_fresh=()
for rep in $(seq 1 "$reps"); do
    say "restores before synth, round $rep of $reps"
    a_first+=("$(restore_once first "$first" "$work/first.sha")")
    a_last+=("$(restore_once last "$last" "$work/last.sha")")
done

say "synth of the last snapshot"
before=$(repo_bytes)
drop_caches
t0=$(date +%s.%N)
"$cairn" synth -q "$last"
t_synth=$(echo "$(date +%s.%N) - $t0" | bc)
grown=$(($(repo_bytes) - before))
synthetic=$("$cairn" snapshots --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(max(s, key=lambda x: x["time"])["id"])')
frag_after=$("$cairn" stats "$synthetic" --json)

say "a fresh full of the last image in a second repository"
fresh_repo=$work/fresh-repo
CAIRN_REPO=$fresh_repo "$cairn" init -q
CAIRN_REPO=$fresh_repo "$cairn" backup -q --disk "$img" --tag fresh
fresh=$(CAIRN_REPO=$fresh_repo "$cairn" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

a_first2=()
for rep in $(seq 1 "$reps"); do
    say "restores after synth, round $rep of $reps"
    a_first2+=("$(restore_once first "$first" "$work/first.sha")")
    a_syn+=("$(restore_once synthetic "$synthetic" "$work/last.sha")")
    a_fresh+=("$(restore_once fresh "$fresh" "$work/last.sha" "$fresh_repo")")
done
t_first=$(median "${a_first[@]}" "${a_first2[@]}")
t_last=$(median "${a_last[@]}")
t_synthetic=$(median "${a_syn[@]}")
t_fresh=$(median "${a_fresh[@]}")
# Per-round ratios (same round, same machine state), median over rounds.
r_syn_fresh=$(for i in "${!a_syn[@]}"; do echo "${a_syn[$i]} / ${a_fresh[$i]}" | bc -l; done | sort -n | sed -n "$(((reps + 1) / 2))p")
r_syn_first=$(for i in "${!a_syn[@]}"; do echo "${a_syn[$i]} / ${a_first2[$i]}" | bc -l; done | sort -n | sed -n "$(((reps + 1) / 2))p")

python3 - "$t_first" "$t_last" "$t_synth" "$t_synthetic" "$t_fresh" "$grown" "$r_syn_fresh" "$r_syn_first" "$frag_before" "$frag_after" "${a_first[*]} | ${a_first2[*]}" "${a_last[*]}" "${a_syn[*]}" "${a_fresh[*]}" <<'PY'
import json, sys
t_first, t_last, t_synth, t_syn, t_fresh = map(float, sys.argv[1:6])
grown = int(sys.argv[6])
r_syn_fresh, r_syn_first = float(sys.argv[7]), float(sys.argv[8])
before, after = json.loads(sys.argv[9]), json.loads(sys.argv[10])
runs = sys.argv[11:15]
def frag(s):
    f = s.get("fragmentation") or {}
    return f"{f.get('packs_per_gib', float('nan')):.1f} packs/GiB, read amplification {f.get('read_amplification', float('nan')):.2f}"
print("| restore | median s | vs first full | vs fresh full of the same image |")
print("|---|---|---|---|")
print(f"| first snapshot (full) | {t_first:.2f} | 1.00x | |")
print(f"| last snapshot, fragmented | {t_last:.2f} | {t_last / t_first:.2f}x | {t_last / t_fresh:.2f}x |")
print(f"| last snapshot after synth | {t_syn:.2f} | {t_syn / t_first:.2f}x | {t_syn / t_fresh:.2f}x |")
print(f"| fresh full of the last image (second repository) | {t_fresh:.2f} | {t_fresh / t_first:.2f}x | 1.00x |")
print()
print(f"median of per-round ratios: after synth / fresh full {r_syn_fresh:.3f}, after synth / first full {r_syn_first:.3f}")
print(f"synth took {t_synth:.2f} s and stored {grown / 2**20:.1f} MiB")
print(f"fragmentation before: {frag(before)}; after: {frag(after)}")
for name, r in zip(["first", "last", "synthetic", "fresh"], runs):
    print(f"runs {name}: {r}")
PY
