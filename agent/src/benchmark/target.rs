//! Upload and download to a repository's target, timed.
//!
//! The test objects are written where a backup writes its packs
//! (`data/xx/<random id>`), one pack size each, because that is the
//! traffic a backup makes. Such an object is exactly what an interrupted
//! backup leaves: a pack no index names. Check reports it as unindexed
//! (not damage) and prune deletes it, so even a benchmark killed before
//! it cleans up leaves nothing that harms the repository. While it runs,
//! it holds a shared `benchmark` lock, so a prune that starts meanwhile
//! waits for it before deleting anything it condemned. Every object
//! written is deleted again, on errors too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_store::{Backend, Handle, Id, ObjectKind, OsRandom, Repository, random::random_32};

use super::StageRate;
use super::stages::test_data;

/// The lock operation name of a benchmark.
pub const LOCK_OPERATION: &str = "benchmark";
/// The most objects one run writes.
const MAX_OBJECTS: usize = 16;

/// The upload and download rates.
#[derive(Debug)]
pub struct TargetRates {
    /// Writing packs.
    pub upload: StageRate,
    /// Reading them back.
    pub download: StageRate,
}

/// The objects written so far, deleted when dropped.
struct Written {
    backend: Arc<dyn Backend>,
    handles: Vec<Handle>,
}

impl Drop for Written {
    fn drop(&mut self) {
        for h in &self.handles {
            // Nothing more can be done here: a leftover is an unindexed
            // pack, which the next prune deletes.
            let _ = self.backend.delete(h);
        }
    }
}

/// Uploads pack-sized test objects for about `time` (at least one), reads
/// each back and checks it, then deletes them all.
pub fn upload_download(
    repo: &Repository,
    host: &str,
    time: Duration,
) -> Result<TargetRates, cairn_store::Error> {
    let _lock = repo.lock(host, LOCK_OPERATION, false)?;
    let size = repo.config().pack_size as usize;
    let data = test_data(u64::from(repo.config().pack_size), size);
    let mut written = Written {
        backend: repo.backend().clone(),
        handles: Vec::new(),
    };
    let start = Instant::now();
    while written.handles.is_empty()
        || (start.elapsed() < time && written.handles.len() < MAX_OBJECTS)
    {
        let handle = Handle::new(ObjectKind::Pack, &Id(random_32(&OsRandom)?));
        // Registered first, so that a write failing half way is deleted too.
        written.handles.push(handle.clone());
        written.backend.write_new(&handle, &data)?;
    }
    let upload = StageRate::new(
        "upload",
        1,
        (written.handles.len() * size) as u64,
        start.elapsed(),
    );
    let start = Instant::now();
    for h in &written.handles {
        let back = written.backend.read(h)?;
        if back != data {
            return Err(cairn_store::Error::corrupt(
                h.path(),
                "the benchmark object read back differs from what was written: the target corrupts data",
            ));
        }
    }
    let download = StageRate::new(
        "download",
        1,
        (written.handles.len() * size) as u64,
        start.elapsed(),
    );
    drop(written);
    Ok(TargetRates { upload, download })
}
