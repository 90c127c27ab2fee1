//! Building a pool.

use std::fmt;
use std::sync::Arc;

use super::registry::{Registry, RegistryConfig, ThreadHooks};
use super::worker::WorkerThread;
use super::{HelpPolicy, PanicPolicy, Pool, ShutdownMode};
use crate::error::BuildError;

/// Configures and builds a [`Pool`].
///
/// # Examples
///
/// ```
/// use jobrunner::{HelpPolicy, Pool};
///
/// let pool = Pool::builder()
///     .threads(4)
///     .queue_capacity(1024)
///     .thread_name("io")
///     .help_policy(HelpPolicy::Own)
///     .build()?;
/// assert_eq!(pool.threads(), 4);
/// # Ok::<(), jobrunner::BuildError>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct PoolBuilder {
    threads: Option<usize>,
    queue_capacity: Option<usize>,
    thread_name: Option<String>,
    stack_size: Option<usize>,
    hooks: ThreadHooks,
    help_policy: HelpPolicy,
    panic_policy: PanicPolicy,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("threads", &self.threads)
            .field("queue_capacity", &self.queue_capacity)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("help_policy", &self.help_policy)
            .field("panic_policy", &self.panic_policy)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// A builder with the defaults: one thread per available CPU, an unbounded queue,
    /// threads named `jobrunner-N`, `HelpPolicy::Own`, `PanicPolicy::Capture`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Worker threads (default: `std::thread::available_parallelism`).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Bounds the jobs submitted from outside the pool and not yet started: `submit`
    /// waits while it is reached, `try_submit` fails with `Full`. Submits from inside
    /// the pool's jobs are never bounded (default: unbounded).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity);
        self
    }

    /// Names worker threads `{prefix}-{index}` (default prefix: `jobrunner`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = Some(prefix.into());
        self
    }

    /// Stack size of the worker threads, in bytes (default: Rust's default).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Called on each worker thread, with its index, before it takes any job.
    pub fn on_thread_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.hooks.start = Some(Arc::new(hook));
        self
    }

    /// Called on each worker thread, with its index, when it stops.
    pub fn on_thread_stop(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.hooks.stop = Some(Arc::new(hook));
        self
    }

    /// Called on a worker thread, with its index, each time it is about to block: to
    /// sleep for want of work (it may still find some at its last look, and not sleep),
    /// or while a job it runs waits for another. For a runtime whose threads
    /// hold something while they run its code, to give it back when the worker goes
    /// idle (the Go binding gives the Go scheduler its processor back, so that a
    /// goroutine woken by a job need not wait for one). It runs often on a pool that
    /// idles often: keep it short, and never let it wait for the pool's work.
    pub fn on_thread_park(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.hooks.park = Some(Arc::new(hook));
        self
    }

    /// What a job waiting for another job does meanwhile (default: `HelpPolicy::Own`).
    pub fn help_policy(mut self, policy: HelpPolicy) -> Self {
        self.help_policy = policy;
        self
    }

    /// What happens when a job panics (default: `PanicPolicy::Capture`).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.panic_policy = policy;
        self
    }

    /// Starts the worker threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroThreads`], [`BuildError::ZeroCapacity`], or
    /// [`BuildError::Spawn`] when the system refuses a thread (the threads already started
    /// are stopped).
    pub fn build(self) -> Result<Pool, BuildError> {
        let threads = match self.threads {
            Some(0) => return Err(BuildError::ZeroThreads),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.queue_capacity == Some(0) {
            return Err(BuildError::ZeroCapacity);
        }
        let name = self.thread_name.unwrap_or_else(|| "jobrunner".to_owned());
        let (registry, deques) = Registry::new(RegistryConfig {
            stack_size: self.stack_size,
            threads,
            capacity: self.queue_capacity,
            name: name.clone(),
            help: self.help_policy,
            panic: self.panic_policy,
            hooks: self.hooks,
        });
        for (index, deque) in deques.into_iter().enumerate() {
            let mut builder = std::thread::Builder::new().name(format!("{name}-{index}"));
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let worker_registry = Arc::clone(&registry);
            match builder.spawn(move || WorkerThread::main(worker_registry, index, deque)) {
                Ok(handle) => registry.add_thread(handle),
                Err(error) => {
                    // No job was accepted yet: this stops and joins the started workers.
                    registry.shutdown(ShutdownMode::Drain, None);
                    return Err(BuildError::Spawn(error.to_string()));
                }
            }
        }
        Ok(Pool::from_new_registry(registry))
    }
}
