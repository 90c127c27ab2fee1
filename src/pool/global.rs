//! The process-wide pool.

use once_cell::sync::OnceCell;

use super::Pool;
use crate::error::BuildError;

static GLOBAL: OnceCell<Result<Pool, BuildError>> = OnceCell::new();

/// The environment variable that sizes the global pool.
const THREADS_VAR: &str = "JOBRUNNER_THREADS";

/// A pool as the global one is made (also a forked child's C global pool).
pub(crate) fn build_global() -> Result<Pool, BuildError> {
    let mut builder = Pool::builder().thread_name("jobrunner-global");
    if let Some(value) = std::env::var_os(THREADS_VAR) {
        let value = value.to_string_lossy().into_owned();
        match value.trim().parse::<usize>() {
            Ok(threads) if threads > 0 => builder = builder.threads(threads),
            _ => return Err(BuildError::InvalidThreadsVar { value }),
        }
    }
    builder.build()
}

/// The process-wide pool, created on first use and never shut down.
///
/// It has one thread per CPU unless `JOBRUNNER_THREADS` says otherwise.
///
/// # Errors
///
/// [`BuildError::InvalidThreadsVar`] when `JOBRUNNER_THREADS` is not a positive integer,
/// or [`BuildError::Spawn`]; every later call returns the same error.
pub fn try_global() -> Result<&'static Pool, BuildError> {
    GLOBAL
        .get_or_init(build_global)
        .as_ref()
        .map_err(Clone::clone)
}

/// The process-wide pool (see [`try_global`]).
///
/// When `JOBRUNNER_THREADS` is invalid it prints the error once to stderr and uses the
/// default size instead, so that a typo in the environment does not take a service down.
///
/// # Panics
///
/// When the system refuses to start any worker thread.
pub fn global() -> &'static Pool {
    static FALLBACK: OnceCell<Pool> = OnceCell::new();
    match try_global() {
        Ok(pool) => pool,
        Err(error @ BuildError::InvalidThreadsVar { .. }) => FALLBACK.get_or_init(|| {
            eprintln!("jobrunner: {error}; using the default number of threads");
            Pool::builder()
                .thread_name("jobrunner-global")
                .build()
                .unwrap_or_else(|e| panic!("jobrunner: cannot start the global pool: {e}"))
        }),
        Err(error) => panic!("jobrunner: cannot start the global pool: {error}"),
    }
}
