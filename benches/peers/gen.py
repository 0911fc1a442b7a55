#!/usr/bin/env python3
"""Data generation and churn for benches/peers.sh.

Everything here is deterministic: the same machine (the same /usr) and the
same sizes give byte-identical trees, patches and images, so runs can be
compared. Pseudo-random bytes come from random.Random(seed).randbytes, which
is stable across Python releases since 3.9.

Subcommands (see peers.sh for how they are chained):
  tree DIR PATCH ORIG BYTES        build the file tree (DIR), its churn (PATCH:
                                   new versions of modified files and added
                                   files) and the originals of the modified
                                   files (ORIG), so the churn can be undone
  apply TREE PATCH                 copy the churn into the tree
  revert TREE PATCH ORIG           undo it (modified files back, added removed)
  fixctime IMG TREE                give the image's inodes a fixed ctime
  filler FILE BYTES                data that is written then deleted inside
                                   the image, so free space is not all zeros
  grow SRC DST BYTES               SRC plus BYTES of appended log lines
  scatter IMG TREE COUNT           rewrite COUNT 4 KiB blocks of file data
                                   inside the ext4 image IMG at seeded offsets
  blockdiff A B FWD REV            count the differing 4 KiB blocks of two
                                   equal-sized images; write the blocks of B
                                   (FWD) and of A (REV) as patch files
  patch IMG PATCHFILE              write a blockdiff patch into IMG in place
"""
import itertools
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

BLOCK = 4096
# Fixed times: mtimes in the past; atimes in the future (2033), so that
# relatime never updates them when mkfs.ext4 -d reads the files (mkfs copies
# atime into the image, and an updated atime would make the image differ by
# run). mkfs also copies ctime, which cannot be set: see cmd_fixctime.
MTIME = 1_700_000_000
MTIME_CHURN = 1_700_086_400
ATIME = 2_000_000_000
SAFE_NAME = re.compile(r"^[A-Za-z0-9._+@/-]+$")


def rng(tag):
    return random.Random(f"cairn-peers-{tag}")


# ---------------------------------------------------------------- content


def vocabulary(r, n):
    """n made-up words and the cumulative weights of a Zipf-like
    distribution over them: a few are common, most rare."""
    words = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(n)]
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(n)))
    return words, cum


# Both generators below draw every line or row afresh from a small
# vocabulary, so their redundancy is local (a 16 KiB piece compresses nearly
# as well as the whole file), as in real logs and tables. Drawing whole
# lines from a large fixed set would instead reward large chunks: zstd would
# find the repeats only across megabytes. Draws are batched for speed.


class Text:
    """Log lines: timestamp, level, component, a message of Zipf-weighted
    words and numbers. zstd -3 compresses it about 3x (16 KiB pieces: 2.6x)."""

    LEVELS = ("INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR")

    def __init__(self, tag):
        r = rng(f"text-{tag}")
        self.words, self.cum = vocabulary(r, 400)
        self.comps = self.words[:24]
        self.r = r
        self.t = 1_700_000_000_000

    def chunk(self, size):
        out = []
        got = 0
        r = self.r
        while got < size:
            nlines = 256
            counts = r.choices(range(3, 13), k=nlines)
            words = r.choices(self.words, cum_weights=self.cum, k=sum(counts))
            comps = r.choices(self.comps, k=nlines)
            pos = 0
            for i in range(nlines):
                self.t += r.randint(1, 5000)
                n = counts[i]
                line = "%d.%03d %s [%s] %s n=%d id=%08x\n" % (
                    self.t // 1000, self.t % 1000, self.LEVELS[r.getrandbits(3)], comps[i],
                    " ".join(words[pos:pos + n]), r.getrandbits(1 + (i % 20)), r.getrandbits(32))
                pos += n
                out.append(line)
                got += len(line)
        return "".join(out).encode()[:size]


class Pages:
    """Database-like 4 KiB pages: a header, rows (length, id, a random 8-byte
    key, two Zipf-weighted words, a small counter, a timestamp), the page
    60-95% full and the rest zeros. zstd -3 takes a page to about half its
    size, on single pages as on the whole file."""

    def __init__(self, tag):
        r = rng(f"pages-{tag}")
        self.words, self.cum = vocabulary(r, 300)
        self.enc = [w.encode() for w in self.words]
        self.r = r
        self.lsn = 0
        self.rowid = 0

    def page(self, no):
        r = self.r
        self.lsn += 1
        fill = BLOCK * r.randint(60, 95) // 100
        nrows = 160  # more than a page holds
        keys = r.randbytes(8 * nrows)
        words = r.choices(self.enc, cum_weights=self.cum, k=2 * nrows)
        parts = [struct.pack("<QQ", no, self.lsn)]
        got = 16
        i = 0
        while got < fill:
            self.rowid += 1
            row = b"".join((struct.pack("<IH", self.rowid, self.rowid * 7 & 511), keys[8 * i:8 * i + 8],
                            words[2 * i], b"|", words[2 * i + 1],
                            struct.pack("<I", 1_700_000_000 + (self.rowid << 3))))
            parts.append(struct.pack("<H", len(row)) + row)
            got += len(row) + 2
            i += 1
        return b"".join(parts)[:fill].ljust(BLOCK, b"\0")


def write_random(path, size, tag):
    r = rng(f"random-{tag}")
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(r.randbytes(n))
            left -= n


def write_text(path, size, tag):
    t = Text(tag)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(t.chunk(n))
            left -= n


def write_pages(path, npages, tag):
    p = Pages(tag)
    with open(path, "wb") as f:
        for no in range(npages):
            f.write(p.page(no))


# ---------------------------------------------------------------- the tree


def usr_files():
    """Regular files of /usr/lib and /usr/share in a sorted walk: stable for
    a given machine. Files over 64 MiB and unreadable files are skipped."""
    for top in ("/usr/lib", "/usr/share"):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                if st.st_size == 0 or st.st_size > (64 << 20) or not os.access(path, os.R_OK):
                    continue
                yield path, st.st_size


def usr_sample(budget, phase):
    """Every n-th file of the walk, n chosen so the sample is about budget
    bytes: a tree with the many small files and few large ones of a real
    system, rather than the first directories of the walk in full. phase
    picks a disjoint sample (the files the churn adds)."""
    files = list(usr_files())
    total = sum(size for _p, size in files)
    n = max(2, total // max(1, budget))
    return (f for i, f in enumerate(files) if i % n == phase % n)


def copy_usr(dst_root, files_iter, budget):
    """Copies files from the walk into dst_root/<path without the leading
    slash> until budget bytes; returns the relative paths copied."""
    done = []
    used = 0
    for path, size in files_iter:
        rel = path.lstrip("/")
        dst = os.path.join(dst_root, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            shutil.copyfile(path, dst)
        except OSError:
            continue
        done.append(rel)
        used += size
        if used >= budget:
            break
    return done


def fix_times(root, mtime):
    for r, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            p = os.path.join(r, name)
            if not os.path.islink(p):
                os.utime(p, (ATIME, mtime))
    os.utime(root, (ATIME, mtime))


def cmd_tree(out, patch, orig, total):
    total = int(total)
    for d in (out, patch, orig):
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
    # The mix: system files (real, partly compressible), a database of
    # pages, media-like random files (incompressible), and logs.
    usr_budget = total * 60 // 100
    db_pages = total * 20 // 100 // BLOCK
    media = total * 15 // 100
    logs = total * 5 // 100
    usr = copy_usr(out, usr_sample(usr_budget, 0), usr_budget)

    os.makedirs(f"{out}/var/lib/db")
    write_pages(f"{out}/var/lib/db/pages.db", db_pages, "db")

    os.makedirs(f"{out}/home/user/media")
    i = 0
    while media > 0:
        n = min(media, 16 << 20)
        write_random(f"{out}/home/user/media/blob-{i:03d}.bin", n, f"media-{i}")
        media -= n
        i += 1

    os.makedirs(f"{out}/var/log")
    for i in range(8):
        write_text(f"{out}/var/log/app-{i}.log", logs // 8, f"log-{i}")

    # The churn of the file tree, about 5% of its size in files touched:
    # 1 in 50 system files gets a 4 KiB overwrite in the middle (an update
    # patching a file in place), 1% of the database pages are rewritten,
    # every log grows by 0.1% of the tree, and new files arrive (the next
    # system files of the walk, 2% of the tree, and a new media file).
    r = rng("tree-churn")
    for n, rel in enumerate(usr):
        if n % 50 != 7:
            continue
        src = os.path.join(out, rel)
        size = os.path.getsize(src)
        if size < 2 * BLOCK:
            continue
        for d in (patch, orig):
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        shutil.copyfile(src, os.path.join(orig, rel))
        shutil.copyfile(src, os.path.join(patch, rel))
        with open(os.path.join(patch, rel), "r+b") as f:
            f.seek((size // 2) & ~(BLOCK - 1))
            f.write(r.randbytes(BLOCK))

    db_rel = "var/lib/db/pages.db"
    for d in (patch, orig):
        os.makedirs(os.path.dirname(os.path.join(d, db_rel)), exist_ok=True)
    shutil.copyfile(f"{out}/{db_rel}", f"{orig}/{db_rel}")
    shutil.copyfile(f"{out}/{db_rel}", f"{patch}/{db_rel}")
    pages = Pages("db-churn")
    with open(f"{patch}/{db_rel}", "r+b") as f:
        for no in sorted(r.sample(range(db_pages), max(1, db_pages // 100))):
            f.seek(no * BLOCK)
            f.write(pages.page(no))

    os.makedirs(f"{patch}/var/log", exist_ok=True)
    os.makedirs(f"{orig}/var/log", exist_ok=True)
    for i in range(8):
        rel = f"var/log/app-{i}.log"
        shutil.copyfile(f"{out}/{rel}", f"{orig}/{rel}")
        shutil.copyfile(f"{out}/{rel}", f"{patch}/{rel}")
        with open(f"{patch}/{rel}", "ab") as f:
            f.write(Text(f"log-{i}-more").chunk(total // 1000))

    copy_usr(os.path.join(patch, "opt/new"), usr_sample(usr_budget, 1), total * 2 // 100)
    os.makedirs(f"{patch}/home/user/media", exist_ok=True)
    write_random(f"{patch}/home/user/media/new-000.bin", total // 200, "media-new")

    fix_times(out, MTIME)
    fix_times(patch, MTIME_CHURN)
    fix_times(orig, MTIME)


def patch_files(patch):
    for r, _dirs, files in os.walk(patch):
        for name in files:
            yield os.path.relpath(os.path.join(r, name), patch)


def cmd_apply(tree, patch):
    for rel in patch_files(patch):
        dst = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(patch, rel), dst)


def cmd_revert(tree, patch, orig):
    for rel in patch_files(patch):
        src = os.path.join(orig, rel)
        dst = os.path.join(tree, rel)
        if os.path.exists(src):
            shutil.copy2(src, dst)
        elif os.path.exists(dst):
            os.unlink(dst)
    # Directories only the churn created.
    for r, dirs, _files in os.walk(patch, topdown=False):
        for name in dirs:
            rel = os.path.relpath(os.path.join(r, name), patch)
            d = os.path.join(tree, rel)
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
    fix_times(tree, MTIME)


# ---------------------------------------------------------------- the image


def cmd_fixctime(img, tree):
    """Sets the ctime of every file and directory in the image to MTIME
    through debugfs, in one process: mkfs.ext4 -d copies the source's ctime,
    the time the generator wrote the file, and the image would differ by
    run."""
    paths = ["/"]
    for r, dirs, files in os.walk(tree):
        for name in dirs + files:
            paths.append("/" + os.path.relpath(os.path.join(r, name), tree))
    with tempfile.NamedTemporaryFile("w", suffix=".cmds", delete=False) as cmds:
        for p in sorted(paths):
            if '"' in p or "\n" in p:
                sys.exit(f"fixctime: cannot quote {p!r} for debugfs")
            cmds.write(f'sif "{p}" ctime @{MTIME}\n')
    out = subprocess.run(["debugfs", "-w", "-f", cmds.name, img], capture_output=True, text=True, check=True)
    os.unlink(cmds.name)
    errors = [line for line in out.stderr.splitlines() if "not found" in line or "Invalid" in line]
    if errors:
        sys.exit("fixctime: " + "; ".join(errors[:5]))


def cmd_filler(path, size):
    """The remains of deleted files in free space: half old system files
    (a sample of /usr disjoint from the tree's), a quarter logs, a quarter
    database pages, in 1 MiB pieces."""
    size = int(size)
    t = Text("filler")
    p = Pages("filler")

    def usr_bytes():
        for path_, _size in usr_sample(size // 2, 2):
            try:
                with open(path_, "rb") as f:
                    yield f.read()
            except OSError:
                continue

    usr = usr_bytes()
    pending = b""
    with open(path, "wb") as f:
        left = size
        no = 0
        while left > 0:
            n = min(left, 1 << 20)
            kind = no % 4
            if kind < 2:
                while len(pending) < n:
                    pending += next(usr, b"") or t.chunk(n)
                buf, pending = pending[:n], pending[n:]
            elif kind == 2:
                buf = t.chunk(n)
            else:
                buf = b"".join(p.page(i) for i in range(256))[:n]
            f.write(buf)
            left -= len(buf)
            no += 1
    os.utime(path, (ATIME, MTIME))


def cmd_grow(src, dst, size):
    shutil.copyfile(src, dst)
    with open(dst, "ab") as f:
        f.write(Text("grow").chunk(int(size)))
    os.utime(dst, (ATIME, MTIME_CHURN))


def cmd_scatter(img, tree, count):
    """Rewrites COUNT distinct 4 KiB blocks, chosen uniformly among the data
    blocks of the files in the image (database pages, libraries, media,
    logs), with page-like content. Only file data is touched so the file
    system stays consistent (e2fsck-clean), as a running VM's would."""
    count = int(count)
    names = sorted(rel for rel in (os.path.relpath(os.path.join(r, n), tree)
                                   for r, _d, fs in os.walk(tree) for n in fs)
                   if SAFE_NAME.match(rel))
    with tempfile.NamedTemporaryFile("w", suffix=".cmds", delete=False) as cmds:
        for rel in names:
            cmds.write(f"blocks /{rel}\n")
    out = subprocess.run(["debugfs", "-f", cmds.name, img], capture_output=True, text=True, check=True).stdout
    os.unlink(cmds.name)
    blocks = []
    for line in out.splitlines():
        if line.startswith("debugfs") or not line.strip() or not line[0].isdigit():
            continue
        blocks.extend(int(x) for x in line.split())
    blocks = sorted(set(blocks))
    r = rng("scatter")
    chosen = sorted(r.sample(blocks, min(count, len(blocks))))
    pages = Pages("scatter")
    fd = os.open(img, os.O_WRONLY)
    try:
        for b in chosen:
            os.pwrite(fd, pages.page(b), b * BLOCK)
    finally:
        os.close(fd)
    print(f"scatter: {len(chosen)} blocks rewritten among {len(blocks)} file data blocks")


def cmd_blockdiff(a, b, fwd, rev):
    size = os.path.getsize(a)
    if os.path.getsize(b) != size:
        sys.exit("blockdiff: the images differ in size")
    step = 1 << 20
    changed = 0
    with open(a, "rb") as fa, open(b, "rb") as fb, open(fwd, "wb") as ff, open(rev, "wb") as fr:
        off = 0
        while off < size:
            ba = fa.read(step)
            bb = fb.read(step)
            if ba != bb:
                for i in range(0, len(ba), BLOCK):
                    if ba[i:i + BLOCK] != bb[i:i + BLOCK]:
                        idx = (off + i) // BLOCK
                        ff.write(struct.pack("<Q", idx) + bb[i:i + BLOCK].ljust(BLOCK, b"\0"))
                        fr.write(struct.pack("<Q", idx) + ba[i:i + BLOCK].ljust(BLOCK, b"\0"))
                        changed += 1
            off += len(ba)
    print(changed)


def cmd_patch(img, patchfile):
    size = os.path.getsize(img)
    fd = os.open(img, os.O_WRONLY)
    try:
        with open(patchfile, "rb") as p:
            while True:
                rec = p.read(8 + BLOCK)
                if not rec:
                    break
                (idx,) = struct.unpack("<Q", rec[:8])
                data = rec[8:][: max(0, min(BLOCK, size - idx * BLOCK))]
                os.pwrite(fd, data, idx * BLOCK)
    finally:
        os.close(fd)


def main():
    cmds = {
        "tree": cmd_tree, "fixctime": cmd_fixctime, "apply": cmd_apply, "revert": cmd_revert, "filler": cmd_filler,
        "grow": cmd_grow, "scatter": cmd_scatter, "blockdiff": cmd_blockdiff, "patch": cmd_patch,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    os.umask(0o022)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
