#!/usr/bin/env python3
"""Deterministic churn of a raw disk image for benches/synth.sh.

  churn.py IMG ROUND USED_BYTES SCATTER_BLOCKS GROW_BYTES

Round ROUND (1, 2, ...) rewrites SCATTER_BLOCKS distinct 4 KiB blocks chosen
uniformly in the first USED_BYTES of the image (the used part of the file
system: "database pages and logs rewritten in place"), and writes GROW_BYTES
of new data at USED_BYTES + (ROUND-1) * GROW_BYTES ("files that grow into
free space"). Half of each new block is text-like (compressible), half
random, so compression behaves as on real data. The same arguments always
give the same bytes (random.Random with a string seed is stable across
Python releases since 3.9).
"""
import os
import random
import sys

BLOCK = 4096


def block_bytes(r):
    text = bytes(r.choices(b"abcdefghijklmnopqrstuvwxyz     \n", k=BLOCK // 2))
    return text + r.randbytes(BLOCK - BLOCK // 2)


def main():
    img, rnd, used, scatter, grow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    r = random.Random(f"cairn-synth-round-{rnd}")
    size = os.path.getsize(img)
    blocks = sorted(r.sample(range(used // BLOCK), scatter))
    start = used + (rnd - 1) * grow
    if start + grow > size:
        sys.exit(f"churn.py: round {rnd} would grow past the image's end ({size} bytes)")
    fd = os.open(img, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, block_bytes(r), b * BLOCK)
        off = start
        while off < start + grow:
            n = min(1 << 20, start + grow - off)
            os.pwrite(fd, b"".join(block_bytes(r) for _ in range(n // BLOCK)), off)
            off += n
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
