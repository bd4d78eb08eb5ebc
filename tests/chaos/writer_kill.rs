//! The writer-kill fault: a forked process takes the region over as its writer (as a respawned watcher does),
//! lays the slot table out again and again, and is killed with SIGKILL at a random point; then a watcher starts
//! again in this process, as nginx respawns its privileged agent. What readers are served must not change at the
//! kill, before the new watcher has repaired anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_disc::testing::{Instance, Writer};

use crate::rng::Rng;

/// A re-layout of the chaos region's table (4m: 16,384 slots) takes well under this on a loaded machine; the kill
/// lands anywhere within it.
const KILL_WINDOW_US: u64 = 3000;

/// What every name is served now: the answers, or the first name whose lookup was not a clean answer.
type Served = Vec<Result<Option<Vec<(String, u16)>>, String>>;

fn served_all(inst: &Instance, names: &[String]) -> Served {
    names.iter().map(|n| crate::served(inst, n)).collect()
}

/// Runs the fault; returns its name for the tally, or what went wrong.
pub fn kill_writer_during_relayouts(
    inst: &Arc<Instance>,
    rng: &mut Rng,
    names: &[String],
) -> Result<&'static str, String> {
    let cluster = inst.clusters[0].clone();
    let generation = inst.generation();
    // The watcher respawned after the previous kill must own the region first, or its claim would take the
    // region from the child below.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.region.status().writer_pid != std::process::id() {
        if Instant::now() >= deadline {
            return Err("no watcher of this process claimed the region within 30s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut fds = [0i32; 2];
    // SAFETY: a pipe for the child to say it owns the region.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the child only claims the shared region, writes to it and to the pipe, and leaves with _exit (or is
    // killed); it never returns into the test harness or touches the parent's threads' state.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            match Writer::claim(&cluster.region, generation) {
                Ok(mut w) => {
                    // SAFETY: writing one byte to our end of the pipe.
                    unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
                    while w.relayout().is_ok() {}
                    break 4;
                }
                // The in-process watcher is inside a batch: it gives the lock back within moments.
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break 3,
            }
        };
        // SAFETY: leave the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing the parent's copy of the write end, so that a child that exits shows as end of file.
    unsafe { libc::close(fds[1]) };
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte from our end of the pipe; returns 0 if the child exits without writing.
    let rc = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
    // SAFETY: closing our end of the pipe.
    unsafe { libc::close(fds[0]) };
    if rc != 1 {
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        return Err(format!(
            "the forked writer could not claim the region (status {status})"
        ));
    }
    // The child owns the region and only re-lays it out: what readers get is fixed from here on.
    let before = served_all(inst, names);
    std::thread::sleep(Duration::from_micros(rng.below(KILL_WINDOW_US)));
    let mut status = 0;
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    let inside = cluster.region.lock_holder_pid() == child as u32;
    let after = served_all(inst, names);
    if let Some(i) = (0..names.len()).find(|&i| before[i] != after[i]) {
        return Err(format!(
            "a writer killed {} a re-layout changed what {} is served: {:?} before, {:?} after",
            if inside { "inside" } else { "between" },
            names[i],
            before[i],
            after[i]
        ));
    }
    if let Some(i) = (0..names.len()).find(|&i| before[i].is_err()) {
        return Err(format!(
            "while the forked writer re-laid out the table, {} was served {:?}",
            names[i], before[i]
        ));
    }
    // nginx respawns the watcher process: a new watcher claims the region (taking the dead child's lock over)
    // and relists. The previous in-process watcher stopped when the child claimed the region.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    std::thread::spawn(move || rt.block_on(k8s_disc::testing::run(cluster, generation)));
    Ok(if inside {
        "writer-killed-in-relayout"
    } else {
        "writer-killed-between-relayouts"
    })
}
