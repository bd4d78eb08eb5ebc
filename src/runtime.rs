//! The watcher runtime: one background thread per process running one single-threaded tokio runtime, with one
//! supervised task per cluster. Started in the watcher process only (privileged agent, worker 0, or the single
//! process), never in the master: threads do not survive fork.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::instance::Instance;
use crate::log::log_at;
use crate::watcher;

/// Why the watchers could not start in this process.
#[derive(Debug)]
pub enum StartError {
    /// The tokio runtime could not be built.
    Runtime(std::io::Error),
    /// The watcher thread could not be spawned.
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Runtime(e) => write!(f, "cannot build the watcher runtime: {e}"),
            StartError::Thread(e) => write!(f, "cannot start the watcher thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The runtime handle and the pid it belongs to (a forked child must not use its parent's).
static RUNTIME: Mutex<Option<(u32, tokio::runtime::Handle)>> = Mutex::new(None);

fn handle() -> Result<tokio::runtime::Handle, StartError> {
    let mut rt = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    if let Some((pid, h)) = rt.as_ref()
        && *pid == me
    {
        return Ok(h.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let h = runtime.handle().clone();
    spawn_with_signals_blocked("k8s-disc", move || {
        runtime.block_on(std::future::pending::<()>())
    })
    .map_err(StartError::Thread)?;
    *rt = Some((me, h.clone()));
    Ok(h)
}

/// Starts the instance's watchers in this process. Returns false if they were already running here.
pub fn start(inst: &Arc<Instance>) -> Result<bool, StartError> {
    let h = handle()?;
    if !inst.mark_started() {
        return Ok(false);
    }
    let generation = inst.generation();
    for cluster in &inst.clusters {
        let cluster = cluster.clone();
        h.spawn(async move {
            // Supervise: a panic in the watcher is logged and the watcher restarted; it never reaches nginx.
            loop {
                match tokio::spawn(watcher::run(cluster.clone(), generation)).await {
                    Ok(()) => break,
                    Err(e) if e.is_panic() => {
                        log_at!(
                            Error,
                            "{}: watcher panicked; restarting it in 1s",
                            cluster.label()
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(_) => break,
                }
            }
        });
    }
    Ok(true)
}

/// Spawns a thread that has every signal blocked from its first instruction on (and so do the threads it spawns).
/// nginx handles its signals (QUIT, HUP, USR1, TERM, ...) by setting flags that its main thread's event loop
/// checks; delivered to the watcher thread instead, they would only be seen once the main thread happened to
/// wake up. A new thread inherits its creator's mask, so the mask is set here, around the spawn, and the
/// calling (nginx) thread's own mask is restored right after: blocking them in the new thread's first statement
/// would leave a window in which it could take a signal.
fn spawn_with_signals_blocked<F>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: both sigset_t are locals, `all` initialised by sigfillset and `saved` filled by pthread_sigmask
    // before it is read; pthread_sigmask only changes the calling thread's mask.
    let (all, mut saved) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        (all, std::mem::zeroed::<libc::sigset_t>())
    };
    // SAFETY: as above; `saved` receives the mask in force before.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut saved) };
    let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
    // SAFETY: restores the mask saved above, whether or not the spawn succeeded.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    spawned
}

/// Gives the memory a relist freed back to the system: the replaced view and the objects parsed on the way leave
/// free pages inside the allocator's heaps (one per thread with glibc), which it keeps until told otherwise. Only
/// free pages are released. The walk of the heaps' free lists takes milliseconds on a large fragmented heap, so it
/// runs on the runtime's blocking pool, not on the thread every cluster's watcher shares.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim takes the allocator's own locks and only releases pages that hold no allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

#[cfg(test)]
mod tests {
    /// The blocked-signal set of the calling thread, from /proc (bit n-1 for signal n).
    fn blocked_here() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("procfs");
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .expect("SigBlk line")
            .trim();
        u64::from_str_radix(hex, 16).expect("hex mask")
    }

    #[test]
    fn the_watcher_thread_starts_with_signals_blocked_and_the_caller_keeps_its_mask() {
        let before = blocked_here();
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn_with_signals_blocked("mask-test", move || {
            tx.send(blocked_here()).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
        let first_statement = rx.recv().unwrap();
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
            libc::SIGWINCH,
            libc::SIGIO,
            libc::SIGALRM,
            libc::SIGPIPE,
        ] {
            assert_ne!(
                first_statement & (1 << (sig - 1)),
                0,
                "signal {sig} not blocked: {first_statement:x}"
            );
        }
        assert_eq!(blocked_here(), before, "the caller's mask is restored");
    }
}
