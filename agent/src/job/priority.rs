//! CPU and I/O priority of a job (`nice`, `ionice`), applied to the
//! process before it starts any thread, so that every worker inherits them.
//! A backup should yield to the applications it protects.

use super::config::{IoNice, Nice};

/// `IOPRIO_WHO_PROCESS` from <linux/ioprio.h>.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// Bits of the level in an I/O priority value.
const IOPRIO_CLASS_SHIFT: libc::c_int = 13;

/// Sets the nice value of the calling thread (and of threads it starts).
pub fn set_nice(nice: Nice) -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of
    // ours; `0` is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice.0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's encoding of an I/O priority.
fn ioprio_value(io: IoNice) -> libc::c_int {
    let class = match io {
        IoNice::Realtime(_) => 1,
        IoNice::BestEffort(_) => 2,
        IoNice::Idle => 3,
    };
    (class << IOPRIO_CLASS_SHIFT) | libc::c_int::from(io.level().unwrap_or(0))
}

/// Sets the I/O scheduling class and level of the calling thread (and of
/// threads it starts).
pub fn set_ionice(io: IoNice) -> std::io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of
    // ours; `0` is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            ioprio_value(io),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ioprio_encoding_matches_the_kernel() {
        assert_eq!(ioprio_value(IoNice::Idle), 3 << 13);
        assert_eq!(ioprio_value(IoNice::BestEffort(7)), (2 << 13) | 7);
        assert_eq!(ioprio_value(IoNice::Realtime(0)), 1 << 13);
    }

    #[test]
    fn lowering_priority_works_unprivileged() {
        // On a thread of its own: the changes stay there.
        std::thread::spawn(|| {
            set_nice(Nice(19)).unwrap();
            // SAFETY: getpriority takes plain integers.
            let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(now, 19);
            set_ionice(IoNice::Idle).unwrap();
        })
        .join()
        .unwrap();
    }
}
