#!/usr/bin/env python3
"""Summarises the raw figures of benches/peers.sh: medians over the
repetitions, ratios of the peers to cairn, the disk incremental's bytes
stored against the changed 4 KiB blocks, and the issue's targets.

Usage: report.py RAW.tsv RESULTS.json KEY=VALUE...
Prints markdown tables on standard output; writes every raw figure, the
medians and the settings (KEY=VALUE) to RESULTS.json."""
import csv
import json
import statistics
import sys

STEPS = ["full", "churn", "same", "restore"]
STEP_NAMES = {"full": "first full", "churn": "incremental after churn",
              "same": "unchanged incremental", "restore": "full restore (latest)"}
DATASETS = {"disk": "disk image", "tree": "file tree"}
MIB = 1 << 20


def med(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def fx(x):
    return "-" if x is None else f"{x:.2f}x"


def main():
    raw_path, out_path = sys.argv[1], sys.argv[2]
    meta = dict(kv.split("=", 1) for kv in sys.argv[3:])
    rows = list(csv.DictReader(open(raw_path), delimiter="\t"))
    for r in rows:
        r["rep"] = int(r["rep"])
        for k in ("wall_s", "user_s", "sys_s"):
            r[k] = float(r[k])
        r["cpu_s"] = r["user_s"] + r["sys_s"]
        r["max_rss_kib"] = int(r["max_rss_kib"])
        r["repo_bytes"] = int(r["repo_bytes"])
        r["cairn_json"] = None
        if r["tool"] == "cairn":
            try:
                r["cairn_json"] = json.load(open(r["stdout"]))
            except (OSError, ValueError):
                pass
    if not rows:
        print("no measurements (PEERS_REPS=0)")
        json.dump({"settings": meta}, open(out_path, "w"), indent=1)
        return
    tools = [t for t in ("cairn", "restic", "borg") if any(r["tool"] == t for r in rows)]
    by = {}
    for r in rows:
        by.setdefault((r["tool"], r["dataset"], r["step"]), []).append(r)

    def get(tool, ds, step):
        return by.get((tool, ds, step), [])

    medians = {}
    for (tool, ds, step), rs in by.items():
        m = {k: med([r[k] for r in rs]) for k in ("wall_s", "cpu_s", "user_s", "sys_s", "max_rss_kib", "repo_bytes")}
        m["wall_min"] = min(r["wall_s"] for r in rs)
        m["wall_max"] = max(r["wall_s"] for r in rs)
        # Repository growth of a backup step, per repetition, then median.
        if step in ("churn", "same"):
            prev = "full" if step == "churn" else "churn"
            growth = []
            for r in rs:
                p = [q for q in get(tool, ds, prev) if q["rep"] == r["rep"]]
                if p:
                    growth.append(r["repo_bytes"] - p[0]["repo_bytes"])
            m["repo_growth_bytes"] = med(growth)
        if tool == "cairn" and step != "restore":
            js = [r["cairn_json"] for r in rs if r["cairn_json"]]
            if js:
                m["cairn_json_bytes_stored"] = med([j["stats"]["bytes_stored"] for j in js])
                m["cairn_json_bytes_new"] = med([j["stats"]["bytes_new"] for j in js])
                m["cairn_json_bytes_read"] = med([j["stats"]["bytes_read"] for j in js])
                m["cairn_json_seconds"] = med([j["seconds"] for j in js])
        medians[f"{tool}/{ds}/{step}"] = m

    def M(tool, ds, step, k):
        return medians.get(f"{tool}/{ds}/{step}", {}).get(k)

    out = []
    p = out.append
    p(f"{meta.get('date', '')}, {meta.get('machine', '')}; {meta.get('reps')} repetitions, medians; "
      f"page cache {'dropped before every step' if meta.get('page_cache_dropped') == '1' else 'warm (could not drop it)'}")
    p(f"{meta.get('cairn')}; {meta.get('restic')}; {meta.get('borg')}")
    p(f"disk image {meta.get('image_mib')} MiB ({int(meta.get('image_allocated_bytes', 0)) / MIB:.0f} MiB allocated); "
      f"file tree {int(meta.get('tree_bytes', 0)) / MIB:.0f} MiB in {meta.get('tree_files')} files; "
      f"tree churn {meta.get('tree_churn_files')} files ({int(meta.get('tree_churn_bytes', 0)) / MIB:.0f} MiB) modified or added")
    p("")
    p("Wall time, seconds (median, min-max); speed-up = peer time / cairn time")
    p("")
    hdr = "| data | step | " + " | ".join(tools) + " | " + " | ".join(f"{t}/cairn" for t in tools if t != "cairn") + " |"
    p(hdr)
    p("|" + "---|" * (2 + len(tools) + len(tools) - 1))
    for ds in DATASETS:
        for step in STEPS:
            cells = []
            for t in tools:
                w = M(t, ds, step, "wall_s")
                cells.append("-" if w is None else f"{w:.2f} ({M(t, ds, step, 'wall_min'):.2f}-{M(t, ds, step, 'wall_max'):.2f})")
            rat = [fx(ratio(M(t, ds, step, "wall_s"), M("cairn", ds, step, "wall_s"))) for t in tools if t != "cairn"]
            p(f"| {DATASETS[ds]} | {STEP_NAMES[step]} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    p("")
    p("CPU time (user+sys), seconds; peer / cairn")
    p("")
    p(hdr)
    p("|" + "---|" * (2 + len(tools) + len(tools) - 1))
    for ds in DATASETS:
        for step in STEPS:
            cells = [fmt(M(t, ds, step, "cpu_s")) for t in tools]
            rat = [fx(ratio(M(t, ds, step, "cpu_s"), M("cairn", ds, step, "cpu_s"))) for t in tools if t != "cairn"]
            p(f"| {DATASETS[ds]} | {STEP_NAMES[step]} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    p("")
    p("Peak RSS, MiB; cairn / peer")
    p("")
    hdr2 = "| data | step | " + " | ".join(tools) + " | " + " | ".join(f"cairn/{t}" for t in tools if t != "cairn") + " |"
    p(hdr2)
    p("|" + "---|" * (2 + len(tools) + len(tools) - 1))
    for ds in DATASETS:
        for step in STEPS:
            cells = [fmt(None if M(t, ds, step, "max_rss_kib") is None else M(t, ds, step, "max_rss_kib") / 1024, 0) for t in tools]
            rat = [fx(ratio(M("cairn", ds, step, "max_rss_kib"), M(t, ds, step, "max_rss_kib"))) for t in tools if t != "cairn"]
            p(f"| {DATASETS[ds]} | {STEP_NAMES[step]} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    p("")
    p("Repository size after the step, MiB (du -sb); cairn / peer")
    p("")
    p(hdr2)
    p("|" + "---|" * (2 + len(tools) + len(tools) - 1))
    for ds in DATASETS:
        for step in ("full", "churn", "same"):
            cells = [fmt(None if M(t, ds, step, "repo_bytes") is None else M(t, ds, step, "repo_bytes") / MIB, 1) for t in tools]
            rat = [fx(ratio(M("cairn", ds, step, "repo_bytes"), M(t, ds, step, "repo_bytes"))) for t in tools if t != "cairn"]
            p(f"| {DATASETS[ds]} | {STEP_NAMES[step]} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    p("")

    changed = int(meta.get("changed_blocks", 0))
    changed_bytes = changed * 4096
    p(f"Disk incremental: {changed} 4 KiB blocks really changed ({changed_bytes / MIB:.1f} MiB; "
      f"{meta.get('grow_blocks')} of them from the grown log, the rest scattered single-block rewrites)")
    p("")
    p("| tool | repository growth, MiB | / changed blocks | unchanged incremental growth, MiB |")
    p("|---|---:|---:|---:|")
    stored = {}
    for t in tools:
        g = M(t, "disk", "churn", "repo_growth_bytes")
        stored[t] = g
        g2 = M(t, "disk", "same", "repo_growth_bytes")
        p(f"| {t} | {fmt(None if g is None else g / MIB)} | {fx(ratio(g, changed_bytes))} | {fmt(None if g2 is None else g2 / MIB, 3)} |")
    p("")
    if "cairn" in tools:
        p("cairn's own JSON (median) against the repository's growth:")
        for ds in DATASETS:
            for step in ("full", "churn", "same"):
                js = M("cairn", ds, step, "cairn_json_bytes_stored")
                if js is None:
                    continue
                du = M("cairn", ds, step, "repo_bytes") if step == "full" else M("cairn", ds, step, "repo_growth_bytes")
                p(f"- {DATASETS[ds]}, {STEP_NAMES[step]}: bytes_stored {js / MIB:.2f} MiB, bytes_new "
                  f"{M('cairn', ds, step, 'cairn_json_bytes_new') / MIB:.2f} MiB, bytes_read "
                  f"{M('cairn', ds, step, 'cairn_json_bytes_read') / MIB:.1f} MiB; du growth {du / MIB:.2f} MiB; "
                  f"seconds {M('cairn', ds, step, 'cairn_json_seconds'):.2f} (wall {M('cairn', ds, step, 'wall_s'):.2f})")
        p("")

    targets = []
    if "cairn" in tools and "restic" in tools:
        for ds in DATASETS:
            sp = ratio(M("restic", ds, "full", "wall_s"), M("cairn", ds, "full", "wall_s"))
            sz = ratio(M("cairn", ds, "full", "repo_bytes"), M("restic", ds, "full", "repo_bytes"))
            targets.append((f"{DATASETS[ds]}: first full >= 2x faster than restic", sp, sp is not None and sp >= 2))
            targets.append((f"{DATASETS[ds]}: first full repository <= restic's (cairn/restic)", sz, sz is not None and sz <= 1))
        for t in ("restic", "borg"):
            if t in tools:
                sp = ratio(M(t, "disk", "same", "wall_s"), M("cairn", "disk", "same", "wall_s"))
                targets.append((f"unchanged disk incremental >= 5x faster than {t}", sp, sp is not None and sp >= 5))
        for ds in DATASETS:
            sp = ratio(M("restic", ds, "restore", "wall_s"), M("cairn", ds, "restore", "wall_s"))
            targets.append((f"{DATASETS[ds]}: restore >= 2x faster than restic", sp, sp is not None and sp >= 2))
        worst = None
        for ds in DATASETS:
            for step in STEPS:
                r = ratio(M("cairn", ds, step, "max_rss_kib"), M("restic", ds, step, "max_rss_kib"))
                if r is not None and (worst is None or r > worst[0]):
                    worst = (r, f"{DATASETS[ds]} {STEP_NAMES[step]}")
        if worst:
            targets.append((f"peak RSS <= restic's (worst step: {worst[1]}, cairn/restic)", worst[0], worst[0] <= 1))
    if "cairn" in tools:
        r = ratio(stored.get("cairn"), changed_bytes)
        targets.append(("disk incremental bytes stored <= 1.5x the changed 4 KiB blocks", r, r is not None and r <= 1.5))
    floor = M("floor", "disk", "read", "wall_s")
    if floor:
        p(f"Disk read floor: the image read once with dd (iflag=direct, bs=4M) took {floor:.2f} s "
          f"(median, {M('floor', 'disk', 'read', 'wall_min'):.2f}-{M('floor', 'disk', 'read', 'wall_max'):.2f}); "
          + "; ".join(f"{t} unchanged disk {ratio(M(t, 'disk', 'same', 'wall_s'), floor):.2f}x of it"
                      for t in tools if M(t, "disk", "same", "wall_s"))
          + (f". No tool can be faster than the floor: restic's unchanged disk over the floor, "
             f"{ratio(M('restic', 'disk', 'same', 'wall_s'), floor):.2f}x, is the largest speed-up over restic possible here."
             if M("restic", "disk", "same", "wall_s") else "."))
        p("")
    p("| target | measured | met |")
    p("|---|---:|---|")
    for name, val, ok in targets:
        p(f"| {name} | {fx(val)} | {'yes' if ok else 'NO'} |")

    text = "\n".join(out)
    print(text)
    json.dump({"settings": meta, "medians": medians, "changed_blocks": changed,
               "targets": [{"target": n, "measured": v, "met": ok} for n, v, ok in targets],
               "raw": [{k: v for k, v in r.items() if k != "stdout"} for r in rows]},
              open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
