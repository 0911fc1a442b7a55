//! SIGINT, SIGTERM and SIGHUP during `cairn run`: stop cleanly, never
//! leaving a file system frozen.
//!
//! The signals are blocked in every thread (the mask is set before any
//! thread starts, and threads inherit it) and received by one thread with
//! `sigwait`, where any code may run: it kills the running hook's process
//! group, thaws what is frozen, lets the caller record the interrupted run,
//! and exits with 128 + the signal number, as a shell reports a process
//! killed by a signal. Hooks unblock the signals for themselves (see
//! `hooks`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when a signal arrived: the run's own ending must then leave the
/// record to the signal thread.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a handled signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The signals handled.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// If a signal arrived, waits for the signal thread to end the process
/// (it thaws, records the run and exits); returns at once otherwise.
pub fn park_if_interrupted() {
    while interrupted() {
        std::thread::park();
    }
}

/// Blocks the signals in the calling thread (call it before starting any
/// thread) and starts the thread that handles them: it runs `on_signal`
/// with the signal number after thawing, then exits the process.
pub fn handle(on_signal: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    // SAFETY: `set` is a sigset_t on our stack, initialized by sigemptyset
    // before sigaddset and pthread_sigmask read it; the old mask is not
    // asked for (null).
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("cairn-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            loop {
                // SAFETY: `set` was initialized above and is only read;
                // `sig` is a valid place for the received signal number.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc == 0 {
                    break;
                }
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
            super::hooks::log_stderr(&format!(
                "received signal {sig}: stopping, thawing what is frozen"
            ));
            super::hooks::kill_running();
            super::freeze::emergency_thaw();
            on_signal(sig);
            std::process::exit(128 + sig);
        })?;
    Ok(())
}
