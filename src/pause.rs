//! Pause points, for the library's unit tests only: a test stops a thread at a named point
//! of the code, while it handles the job of a given name, to drive one interleaving of a
//! race deterministically (as FreeBSD's fail points or TiKV's `fail` crate do). The code
//! marks a point with `#[cfg(test)] crate::pause::point(NAME, job_name)`; outside the unit
//! tests there is nothing there.
//!
//! A point is armed once, for one job name (or pool name, for a point about a pool), so
//! tests running in parallel, each with names of its own, do not stop each other's
//! threads: the first thread to reach it for that name tells the test and waits until
//! the test resumes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// Armed points: (point, job name, tell the test, wait for the test).
type Armed = Vec<(&'static str, String, Sender<()>, Receiver<()>)>;

static ARMED: Mutex<Armed> = Mutex::new(Vec::new());
/// How many points are armed: a point on a hot path (a worker's idle loop) costs a load
/// while none is.
static ARMED_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The test's side of an armed point.
pub(crate) struct Pause {
    point: &'static str,
    job: String,
    reached: Receiver<()>,
    resume: Sender<()>,
}

/// Arms `point` for the job (or pool) named `job`.
pub(crate) fn arm(point: &'static str, job: &str) -> Pause {
    let (reached_tx, reached) = channel();
    let (resume, resume_rx) = channel();
    ARMED
        .lock()
        .unwrap()
        .push((point, job.to_owned(), reached_tx, resume_rx));
    ARMED_COUNT.fetch_add(1, Ordering::SeqCst);
    Pause {
        point,
        job: job.to_owned(),
        reached,
        resume,
    }
}

/// Stops here if a test armed `point` for this job, or pool (see the module docs).
pub(crate) fn point(point: &'static str, job: Option<&str>) {
    let Some(job) = job else {
        return;
    };
    if ARMED_COUNT.load(Ordering::SeqCst) == 0 {
        return;
    }
    let armed = {
        let mut armed = ARMED.lock().unwrap();
        let found = armed
            .iter()
            .position(|(p, name, ..)| *p == point && name == job);
        found.map(|index| armed.swap_remove(index))
    };
    if armed.is_some() {
        ARMED_COUNT.fetch_sub(1, Ordering::SeqCst);
    }
    let Some((_, _, reached, resume)) = armed else {
        return;
    };
    let _ = reached.send(());
    if resume.recv().is_err() {
        // The test failed before resuming us: going on could be what it just caught (a
        // use after free, say). Stay here; the test binary reports the failure.
        loop {
            std::thread::park();
        }
    }
}

impl Pause {
    /// Waits until a thread stops at the point; false if none did within `timeout`.
    pub(crate) fn wait_reached(&self, timeout: Duration) -> bool {
        self.reached.recv_timeout(timeout).is_ok()
    }

    /// Lets the stopped thread go on.
    pub(crate) fn resume(self) {
        let _ = self.resume.send(());
    }
}

impl Drop for Pause {
    /// Disarms the point if no thread reached it (a test that failed first).
    fn drop(&mut self) {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        let before = armed.len();
        armed.retain(|(p, name, ..)| !(*p == self.point && *name == self.job));
        ARMED_COUNT.fetch_sub(before - armed.len(), Ordering::SeqCst);
    }
}
