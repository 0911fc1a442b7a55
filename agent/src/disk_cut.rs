//! Cutting a disk into chunks, re-using the parent's cuts where the disk is
//! unchanged.
//!
//! Content-defined cuts depend only on the bytes since the last cut. So if a
//! chunk starts where the parent snapshot had a cut and its bytes are the
//! parent's chunk (same keyed hash), its end is the parent's next cut too:
//! the chunker need not run. A [`Cutter`] therefore walks the parent's
//! extent list and *verifies* each parent chunk (one hash, which the backup
//! needs anyway) instead of searching for cuts; at the first chunk that
//! differs it runs the chunker from there, until one of the chunker's cuts
//! lands on a cut the parent had, and verifies again from that point. An
//! unchanged disk costs a read and a hash, no chunking.
//!
//! The parent's runs of zero chunks are stored merged, so their inner cuts
//! are not recorded. They need not be: from a cut, a run of zeros is always
//! cut every `zero_len` bytes (the chunker's first cut in zeros), so a zero
//! run that starts at a cut has cuts at every multiple of `zero_len` from its
//! start, and a zero run of the parent is verified `zero_len` bytes at a
//! time. Over an image's holes (which the reader zero-fills instead of reading)
//! the zeros are known, so a parent's zero run there is verified without
//! scanning the bytes.
//!
//! The result is exactly the cuts of chunking the whole disk, which the
//! tests check against the chunker run from the start.

use std::collections::VecDeque;

use cairn_chunker::Chunker;
use cairn_store::{Id, Repository};
use rayon::prelude::*;

use crate::chunklist::{ListError, ListReader, ListRoot};
use crate::disk::is_zero;

/// What the cutter already knows about a chunk's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Nothing: the worker checks for zeros and hashes it.
    Unknown,
    /// All zeros (verified).
    Zero,
    /// This blob (the keyed hash was computed and matched the parent's).
    Blob(Id),
}

/// One chunk of a region: offset in the region, length, what is known.
pub type Cut = (usize, usize, Known);

/// The parent's extents, walked forward by disk offset. Extents are kept
/// from the last committed position on, so that the cutter can look ahead
/// (verifying a run of chunks) and still ask about earlier offsets when a
/// chunk in the run differs.
struct ParentWalk<'r> {
    reader: ListReader<'r>,
    /// Extents read and not yet released: (disk offset, length, blob).
    ahead: VecDeque<(u64, u64, Option<Id>)>,
    /// Disk offset after the last extent read.
    next_pos: u64,
    done: bool,
}

impl ParentWalk<'_> {
    /// The extent containing disk offset `at`, or `None` past the parent's
    /// end (or before the last released offset).
    fn at(&mut self, at: u64) -> Result<Option<(u64, u64, Option<Id>)>, ListError> {
        while !self.done && self.next_pos <= at {
            match self.reader.next_extent()? {
                None => self.done = true,
                Some(e) => {
                    let pos = self.next_pos;
                    self.next_pos = pos.saturating_add(e.len);
                    self.ahead.push_back((pos, e.len, e.blob));
                }
            }
        }
        // Extents are in order: a binary search finds the one holding `at`.
        let idx = self.ahead.partition_point(|e| e.0 + e.1 <= at);
        Ok(self.ahead.get(idx).copied().filter(|e| e.0 <= at))
    }

    /// Forgets the extents that end at or before `at`.
    fn release(&mut self, at: u64) {
        while self.ahead.front().is_some_and(|e| e.0 + e.1 <= at) {
            self.ahead.pop_front();
        }
    }
}

/// Whether `[start, end)` lies inside one of `ranges` (sorted, merged).
fn within(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    let k = ranges.partition_point(|r| r.1 <= start);
    ranges.get(k).is_some_and(|r| r.0 <= start && end <= r.1)
}

/// Whether cutting is verifying the parent's cuts or searching for cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Verify,
    Search,
}

/// Cuts a disk region by region, verifying the parent's cuts where it can.
pub struct Cutter<'r> {
    repo: &'r Repository,
    chunker: &'r Chunker,
    walk: ParentWalk<'r>,
    mode: Mode,
    /// The length of a chunk of zeros cut from a cut.
    zero_len: u64,
    /// The parent disk's size: its last chunk ended there because the disk
    /// did, which is no cut at all if the disk has grown.
    parent_len: u64,
    /// Hashes of parent-aligned ranges already computed: (disk offset,
    /// length, id), in disk order. A run is hashed on every thread at once,
    /// so the chunks after one that differs are hashed too; after the
    /// search resyncs, verifying them again must not hash them again (it
    /// did: 4,000 scattered writes in 2 GiB hashed 16 GB).
    hashed: VecDeque<(u64, usize, Id)>,
    threads: usize,
    /// The threads that hash a run, started once: a window's run used to
    /// spawn its own, two thread starts per 2 MiB window of the disk.
    /// `None` with one thread, or if the threads could not be started.
    pool: Option<rayon::ThreadPool>,
}

impl<'r> Cutter<'r> {
    /// A cutter at the start of a disk whose parent's extents are `parent`.
    pub fn new(
        repo: &'r Repository,
        chunker: &'r Chunker,
        parent: &ListRoot,
        threads: usize,
    ) -> Result<Self, ListError> {
        let zeros = vec![0u8; 2 * chunker.params().max_size];
        let zero_len = chunker.chunks(&zeros).next().map_or(1, |c| c.data.len()) as u64;
        Ok(Cutter {
            repo,
            chunker,
            walk: ParentWalk {
                reader: ListReader::new(repo, parent)?,
                ahead: VecDeque::new(),
                next_pos: 0,
                done: false,
            },
            mode: Mode::Verify,
            zero_len: zero_len.max(1),
            parent_len: parent.bytes,
            hashed: VecDeque::new(),
            threads: threads.max(1),
            pool: (threads > 1)
                .then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("cairn-verify-{i}"))
                        .build()
                        .ok()
                })
                .flatten(),
        })
    }

    /// Whether the parent had a cut at disk offset `at`.
    fn parent_cut_at(&mut self, at: u64) -> Result<bool, ListError> {
        if at >= self.parent_len {
            return Ok(false);
        }
        Ok(match self.walk.at(at)? {
            Some((pos, _, Some(_))) => pos == at,
            Some((pos, _, None)) => (at - pos).is_multiple_of(self.zero_len),
            None => false,
        })
    }

    /// Cuts `region`, which starts at disk offset `base` at a cut. Returns
    /// the chunks of its first `consumed` bytes; the rest (a chunk the
    /// region's end may have cut short) must start the next region. With
    /// `last`, the region ends the disk and is consumed whole.
    ///
    /// `holes` are disk ranges known to hold zeros (an image's holes, which
    /// were not read but zero-filled), sorted and merged: the parent's zero
    /// runs over them are taken as verified without scanning the bytes.
    pub fn cut(
        &mut self,
        region: &[u8],
        base: u64,
        last: bool,
        holes: &[(u64, u64)],
    ) -> Result<(Vec<Cut>, usize), ListError> {
        let mut cuts: Vec<Cut> = Vec::new();
        let mut i = 0usize;
        while i < region.len() {
            let at = base + i as u64;
            self.walk.release(at);
            while self.hashed.front().is_some_and(|h| h.0 < at) {
                self.hashed.pop_front();
            }
            let progress = match self.mode {
                Mode::Verify => self.verify(region, base, last, holes, &mut i, &mut cuts)?,
                Mode::Search => self.search(region, base, last, &mut i, &mut cuts)?,
            };
            if !progress {
                break;
            }
        }
        Ok((cuts, i))
    }

    /// Verifies parent chunks from region offset `*i`; returns false when
    /// the rest of the region must be carried over.
    fn verify(
        &mut self,
        region: &[u8],
        base: u64,
        last: bool,
        holes: &[(u64, u64)],
        i: &mut usize,
        cuts: &mut Vec<Cut>,
    ) -> Result<bool, ListError> {
        let at = base + *i as u64;
        let Some((pos, len, blob)) = self.walk.at(at)? else {
            self.mode = Mode::Search;
            return Ok(true);
        };
        let end = base + region.len() as u64;
        // A cut where the parent disk ended is a cut here only if this disk
        // ends there too.
        let real_cut = |cut: u64| cut < self.parent_len || (last && cut == end);
        match blob {
            Some(_) => {
                if pos != at {
                    self.mode = Mode::Search;
                    return Ok(true);
                }
                // The run of whole blob extents that fit in the region.
                let mut run: Vec<(usize, usize, Id)> = Vec::new();
                let mut p = at;
                while let Some((q, l, Some(id))) = self.walk.at(p)? {
                    if q + l > end || !real_cut(q + l) {
                        break;
                    }
                    run.push(((q - base) as usize, l as usize, id));
                    p = q + l;
                    if p == end || run.len() >= 4096 {
                        break;
                    }
                }
                if run.is_empty() {
                    if pos + len <= end {
                        // The parent's last chunk, and the disk has grown.
                        self.mode = Mode::Search;
                        return Ok(true);
                    }
                    // The parent's chunk crosses the region's end. It is
                    // carried into the next region, which has room for one
                    // chunk in front, so only a chunk the chunker could
                    // have cut is carried.
                    let longer_than_a_chunk = len > self.chunker.params().max_size as u64;
                    if last || longer_than_a_chunk {
                        // Past the disk's end (it shrank), or longer than any
                        // chunk can be (a damaged parent list): search.
                        self.mode = Mode::Search;
                        return Ok(true);
                    }
                    return Ok(false);
                }
                let ids = self.hash_run(region, base, &run);
                for ((offset, len, want), got) in run.into_iter().zip(ids) {
                    if got != want {
                        self.mode = Mode::Search;
                        return Ok(true);
                    }
                    cuts.push((offset, len, Known::Blob(got)));
                    *i = offset + len;
                }
                Ok(true)
            }
            None => {
                if !(at - pos).is_multiple_of(self.zero_len) {
                    self.mode = Mode::Search;
                    return Ok(true);
                }
                let run_end = ((pos + len).min(end) - base) as usize;
                let mut j = *i;
                let mut differs = false;
                while j < run_end {
                    let unit_end = (j + self.zero_len as usize).min((pos + len - base) as usize);
                    if unit_end > region.len() {
                        break;
                    }
                    let zeros = within(holes, base + j as u64, base + unit_end as u64)
                        || is_zero(&region[j..unit_end]);
                    if !real_cut(base + unit_end as u64) || !zeros {
                        differs = true;
                        break;
                    }
                    j = unit_end;
                }
                if j > *i {
                    cuts.push((*i, j - *i, Known::Zero));
                    *i = j;
                }
                if differs || (last && j < run_end) {
                    // A zero unit now holds data, or the parent's zeros
                    // run past the disk's end: search from this cut.
                    self.mode = Mode::Search;
                    return Ok(true);
                }
                // Done with this run (on to the next extent), or its next
                // unit crosses the region's end (carry it).
                Ok(j == run_end && j < region.len())
            }
        }
    }

    /// Runs the chunker from region offset `*i` until a cut lands on one of
    /// the parent's; returns false when the rest must be carried over.
    fn search(
        &mut self,
        region: &[u8],
        base: u64,
        last: bool,
        i: &mut usize,
        cuts: &mut Vec<Cut>,
    ) -> Result<bool, ListError> {
        let from = *i;
        for c in self.chunker.chunks(&region[from..]) {
            let start = from + c.offset as usize;
            let end = start + c.data.len();
            if end == region.len() && !last {
                // Maybe cut short by the region's end: carry it.
                *i = start;
                return Ok(false);
            }
            cuts.push((start, c.data.len(), Known::Unknown));
            *i = end;
            if end < region.len() && self.parent_cut_at(base + end as u64)? {
                self.mode = Mode::Verify;
                return Ok(true);
            }
        }
        Ok(*i < region.len())
    }

    /// The keyed hashes of the run's chunks: those hashed before are looked
    /// up, the rest computed on the cutter's threads and remembered.
    fn hash_run(&mut self, region: &[u8], base: u64, run: &[(usize, usize, Id)]) -> Vec<Id> {
        let known = |hashed: &VecDeque<(u64, usize, Id)>, pos: u64, len: usize| {
            let k = hashed.partition_point(|h| h.0 < pos);
            hashed
                .get(k)
                .filter(|h| h.0 == pos && h.1 == len)
                .map(|h| h.2)
        };
        let todo: Vec<(usize, usize, Id)> = run
            .iter()
            .filter(|&&(o, l, _)| known(&self.hashed, base + o as u64, l).is_none())
            .copied()
            .collect();
        let computed = self.hash_all(region, &todo);
        for (&(o, l, _), id) in todo.iter().zip(computed) {
            let pos = base + o as u64;
            let k = self.hashed.partition_point(|h| h.0 < pos);
            self.hashed.insert(k, (pos, l, id));
        }
        run.iter()
            .map_while(|&(o, l, _)| known(&self.hashed, base + o as u64, l))
            .collect()
    }

    /// The keyed hashes of the run's chunks, on the cutter's threads.
    fn hash_all(&self, region: &[u8], run: &[(usize, usize, Id)]) -> Vec<Id> {
        let hash = |&(o, l, _): &(usize, usize, Id)| self.repo.blob_id(&region[o..o + l]);
        match &self.pool {
            Some(pool) if run.len() >= 8 => pool.install(|| {
                run.par_iter()
                    .with_min_len(run.len().div_ceil(4 * self.threads))
                    .map(hash)
                    .collect()
            }),
            _ => run.iter().map(hash).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn within_finds_the_range_that_holds_a_span() {
        let ranges = [(0, 10), (20, 30), (40, 50)];
        assert!(within(&ranges, 0, 10));
        assert!(within(&ranges, 22, 28));
        assert!(within(&ranges, 40, 50));
        assert!(!within(&ranges, 5, 15), "crosses a range's end");
        assert!(!within(&ranges, 15, 18), "between ranges");
        assert!(!within(&ranges, 45, 55));
        assert!(!within(&ranges, 60, 70));
        assert!(!within(&[], 0, 1));
    }
}
