//! The process-wide pool: `global()` runs jobs, and `JOBRUNNER_THREADS` sizes it or, when
//! invalid, makes `try_global()` fail while `global()` reports the error and falls back.
//!
//! The global pool is created once per process, so each environment is tested in a child
//! process: the parent test re-runs this binary on one `#[ignore]`d child test with the
//! variable set, and checks its exit status and output.

use std::collections::BTreeSet;
use std::process::Output;
use std::thread;

use jobrunner::{global, try_global, BuildError, Pool};

#[allow(dead_code)]
mod common;

use common::{
    assert_child_passed, child_test, from_parent, meet_on_workers, thread_name, CHILD_OK,
};

/// The variable under test.
const THREADS_VAR: &str = "JOBRUNNER_THREADS";
/// Set by the parent test for a child: what the child must find.
const EXPECT_VAR: &str = "JOBRUNNER_TEST_EXPECT";

/// Runs, on `pool`, `n` jobs that all wait for each other (so they run on `n` different
/// workers), and returns the names of their threads.
fn names_of_workers(pool: &Pool, n: usize) -> BTreeSet<String> {
    meet_on_workers(pool, n)
        .into_iter()
        .map(|(_, name)| name.unwrap_or_default())
        .collect()
}

fn expected_names(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("jobrunner-global-{i}")).collect()
}

/// Runs one ignored test of this binary in a child process with `JOBRUNNER_THREADS` set
/// to `value` and the expectation `expect`.
fn run_child(test: &str, value: &str, expect: &str) -> Output {
    child_test(test)
        .env(THREADS_VAR, value)
        .env(EXPECT_VAR, expect)
        .output()
        .unwrap()
}

#[test]
fn global_pool_runs_jobs() {
    let pool = global();
    assert!(std::ptr::eq(pool, global()), "global() made a second pool");
    assert!(!pool.is_worker_thread());
    let job = pool
        .submit(|ctx| {
            let inner = ctx.pool().submit(|_| Ok::<_, ()>(20)).unwrap();
            Ok::<_, ()>((
                inner.wait().unwrap() + 1,
                global().is_worker_thread(),
                thread_name().unwrap_or_default(),
            ))
        })
        .unwrap();
    let (value, on_worker, name) = job.wait().unwrap();
    assert_eq!(value, 21);
    assert!(on_worker, "the global pool does not know its own worker");
    assert!(name.starts_with("jobrunner-global-"), "{name}");
    assert!(!global().is_shut_down());
}

/// Run by [`threads_var_sizes_the_global_pool`] in a child process.
#[test]
#[ignore = "run in a child process by threads_var_sizes_the_global_pool"]
fn child_threads_var_is_valid() {
    let Some(expect) = from_parent(EXPECT_VAR) else {
        return;
    };
    let threads: usize = expect.parse().unwrap();
    let pool = try_global().expect("a valid JOBRUNNER_THREADS was refused");
    assert_eq!(pool.threads(), threads);
    assert!(
        std::ptr::eq(pool, global()),
        "global() and try_global() differ"
    );
    assert_eq!(names_of_workers(pool, threads), expected_names(threads));
    println!("{CHILD_OK}");
}

#[test]
fn threads_var_sizes_the_global_pool() {
    for (value, threads) in [("3", "3"), (" 1 ", "1")] {
        let output = run_child("child_threads_var_is_valid", value, threads);
        assert_child_passed(&output, &format!("{THREADS_VAR}={value:?}"));
    }
}

/// Run by [`invalid_threads_var_is_an_error_and_global_falls_back`] in a child process.
#[test]
#[ignore = "run in a child process by invalid_threads_var_is_an_error_and_global_falls_back"]
fn child_threads_var_is_invalid() {
    let Some(value) = from_parent(EXPECT_VAR) else {
        return;
    };
    let error = try_global().expect_err("an invalid JOBRUNNER_THREADS was accepted");
    assert_eq!(
        error,
        BuildError::InvalidThreadsVar {
            value: value.clone()
        }
    );
    assert!(error.to_string().contains(THREADS_VAR), "{error}");
    assert_eq!(try_global().unwrap_err(), error, "a later call differs");
    // global() falls back to the default size, and says why on stderr, once.
    let pool = global();
    assert!(std::ptr::eq(pool, global()));
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.threads(), threads);
    assert_eq!(names_of_workers(pool, threads), expected_names(threads));
    println!("{CHILD_OK}");
}

#[test]
fn invalid_threads_var_is_an_error_and_global_falls_back() {
    for value in ["abc", "0", "-2", "", "3x"] {
        let output = run_child("child_threads_var_is_invalid", value, value);
        let what = format!("{THREADS_VAR}={value:?}");
        assert_child_passed(&output, &what);
        let error = BuildError::InvalidThreadsVar {
            value: value.to_owned(),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reported = format!("jobrunner: {error}; using the default number of threads");
        assert_eq!(
            stderr.matches(&reported).count(),
            1,
            "{what}: global() should report the error once; stderr:\n{stderr}"
        );
        assert!(stderr.contains(THREADS_VAR));
    }
}
