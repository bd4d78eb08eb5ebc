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
    std::thread::Builder::new()
        .name("k8s-disc".into())
        .spawn(move || {
            block_signals_in_this_thread();
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

/// Blocks every signal in the calling thread (and the threads it spawns later). nginx handles its signals
/// (QUIT, HUP, USR1, TERM, ...) by setting flags that its main thread's event loop checks; delivered to the watcher
/// thread instead, they would only be seen once the main thread happened to wake up.
fn block_signals_in_this_thread() {
    // SAFETY: `set` is a local sigset_t initialised by sigfillset before use; pthread_sigmask only changes the
    // calling thread's mask and accepts a NULL old-set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
