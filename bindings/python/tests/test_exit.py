"""The interpreter ends with jobs in flight: at the end of the script, by ``sys.exit``,
by an uncaught exception, with daemon threads blocked in waits, or killed by SIGTERM
(with and without a handler). Each case runs ``exit_child.py`` in a child interpreter
(which puts Python, native and C jobs of every kind in flight, see its doc) and checks
that it ends within a deadline, with the exit status it should have, without a crash
(no abort, no "Fatal Python error", no faulthandler dump), and, when the interpreter
ran its exit handlers, that every job ended exactly once and everything the jobs owned
was released exactly once (the child's report, and the C helper's own count after
``Py_Finalize``). The child waits for its jobs to start and says ``ready``; nothing
here sleeps."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import jobrunner
from conftest import child_env, run_child

HERE = Path(__file__).resolve().parent
CHILD = HERE / "exit_child.py"
INCLUDE = HERE.parents[2] / "include"

#: How long a child may take from its start to its end. They take under a second when
#: the machine is quiet.
DEADLINE = 60.0

#: What a crash or a hang's dump leaves on stderr.
CRASH_SIGNS = (
    "Fatal Python error",
    "FATAL",
    "Segmentation fault",
    "Aborted",
    "most recent call first",  # a faulthandler dump
    "Exception ignored",
    "Warning",
)


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    so = tmp_path_factory.mktemp("exit") / "libexit_helper.so"
    lib = Path(jobrunner.LIBRARY_PATH)
    subprocess.run(
        [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O2", f"-I{INCLUDE}",
         "-o", str(so), str(HERE / "exit_helper.c"), f"-L{lib.parent}", f"-l:{lib.name}",
         f"-Wl,-rpath,{lib.parent}", "-pthread"],
        check=True,
    )
    return so


def _start(helper: Path, how: str, where: str = "") -> subprocess.Popen[str]:
    # PYTHONFAULTHANDLER: a crash dumps every thread's stack on stderr.
    env = child_env({"JOBRUNNER_THREADS": "6", "PYTHONFAULTHANDLER": "1"})
    args = [sys.executable, str(CHILD), str(helper), how] + ([where] if where else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _await_ready(proc: subprocess.Popen[str]) -> None:
    """Read the child's stdout up to its ``ready`` line (a hang guard kills it)."""
    guard = threading.Timer(DEADLINE, proc.kill)
    guard.start()
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        guard.cancel()
    if line != "ready\n":
        out, err = proc.communicate()
        pytest.fail(f"the child did not get ready: {line!r}{out}\n{err}")


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child hung at exit (killed after {DEADLINE} s)\n{out}\n{err}")


def _no_crash(err: str, allowed: str = "") -> None:
    rest = err.replace(allowed, "") if allowed else err
    for sign in CRASH_SIGNS:
        assert sign not in rest, f"{sign!r} on stderr:\n{err}"


def _check_report(out: str) -> None:
    """The child's atexit report says ok, and the C helper's count after Py_Finalize
    matches it plus the detached job (nothing released after the check, nor twice)."""
    assert "report: ok" in out, out
    c = re.search(r"^c: \d+ jobs, \d+ succeeded, arg_frees=(\d+) result_frees=(\d+)$", out, re.M)
    final = re.search(r"^c-destructor: arg_frees=(\d+) result_frees=(\d+) stray=0 detached_pending=0$", out, re.M)
    assert c and final, out
    # The detached job (never waited for by Python) adds one of each.
    assert (int(final[1]), int(final[2])) == (int(c[1]) + 1, int(c[2]) + 1), out


@pytest.mark.parametrize(
    ("how", "code", "allowed"),
    [
        ("end", 0, ""),
        ("sys.exit", 3, ""),
        ("raise", 1, "RuntimeError: the script failed with jobs in flight"),
        ("daemon", 0, ""),
    ],
)
def test_exit_with_jobs_in_flight(helper: Path, how: str, code: int, allowed: str) -> None:
    """The script ends (its end, sys.exit, an exception, with daemon threads blocked
    in waits): queued jobs end cancelled, running ones are told and waited for, every
    destructor runs once, and the interpreter exits with the script's status."""
    proc = _start(helper, how)
    _await_ready(proc)
    out, err = _finish(proc)
    assert proc.returncode == code, f"exit status {proc.returncode}\n{out}\n{err}"
    if allowed:
        assert allowed in err and err.count("Traceback") == 1, err
    else:
        assert "Traceback" not in err, err
    _no_crash(err, allowed)
    _check_report(out)


def test_sigterm_default_action_mid_flight(helper: Path) -> None:
    """No handler: SIGTERM ends the process at once, whatever the workers are doing."""
    proc = _start(helper, "sigterm")
    _await_ready(proc)
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == -signal.SIGTERM, f"exit status {proc.returncode}\n{out}\n{err}"
    _no_crash(err)
    assert "report:" not in out  # no exit handler ran: the signal ended it


@pytest.mark.parametrize("where", ["result", "group", "channel", "token", "semaphore", "shutdown"])
def test_sigterm_handler_mid_flight(helper: Path, where: str) -> None:
    """A handler that raises SystemExit, as a user's would, while the main thread waits
    in a call of the binding: the wait ends, the exit handlers run as for sys.exit."""
    proc = _start(helper, "sigterm-handler", where)
    _await_ready(proc)
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == 128 + signal.SIGTERM, f"exit status {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    _no_crash(err)
    _check_report(out)


# Regressions: streams and pipelines left running at exit. Before the exit hook stopped
# them, the first aborted every run ("FATAL: exception not rethrown": the producer, on
# the shared pool, which the hook did not know of, went back into Python during
# finalisation), the second hung every run (the feeder waits in a push that its job's
# cancellation does not end, and the hook's Cancel shutdown waits for the feeder), the
# third aborted about one run in three (a stage function running on the shared pool).
EXIT_SCRIPTS = {
    "stream on the shared pool": """
        import itertools, jobrunner
        s = jobrunner.Pool.default().stream(itertools.count, capacity=4)
        assert [s.get(), s.get(), s.get()] == [0, 1, 2]
    """,
    "pipeline and stream on a pool of ours": """
        import itertools, threading, jobrunner
        pool = jobrunner.Pool(threads=2)
        gate = threading.Event()
        p = pool.pipeline(itertools.count(), max_in_flight=8).stage(lambda x: gate.wait(0.05) or x, concurrency=2)
        assert [p.get(), p.get(), p.get()] == [0, 1, 2]
        s = pool.stream(itertools.count, capacity=2)
        assert s.get() == 0
    """,
    "pipeline on the shared pool": """
        import itertools, threading, jobrunner
        gate = threading.Event()
        p = jobrunner.Pool.default().pipeline(itertools.count(), max_in_flight=8).stage(
            lambda x: gate.wait(0.05) or x, concurrency=2)
        assert [p.get(), p.get(), p.get()] == [0, 1, 2]
    """,
}


@pytest.mark.parametrize("name", list(EXIT_SCRIPTS))
def test_exit_with_a_stream_or_pipeline_running(name: str) -> None:
    for _ in range(3):
        try:
            proc = run_child(EXIT_SCRIPTS[name], {"JOBRUNNER_THREADS": "2"}, timeout=DEADLINE)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"hung at exit: {exc.stderr!r}")
        assert proc.returncode == 0, proc.stderr
        _no_crash(proc.stderr)


def test_exit_waits_for_done_callbacks_on_the_shared_pool(helper: Path) -> None:
    """A native job's future on the shared pool is completed by a done callback on the
    worker, after the job's waiters (the exit hook among them) have woken, and the
    future's own done callbacks run user code there. The exit hook must wait for them
    (else they run into the finalising interpreter, which aborts the process when they
    release the GIL and take it back). Regression: the suite's child once saw a watched
    future's callback still pending after the hook; this callback runs ~0.3 s (its own
    work, waited for, not a sleep of the test), so without the wait it is still running
    when the handler registered before the import checks."""
    code = f"""
        import atexit, ctypes, threading
        state = {{"ended": False}}
        atexit.register(lambda: print("callback ended before the last handler:", state["ended"], flush=True))
        import jobrunner
        h = ctypes.CDLL({str(helper)!r})
        def slow(fut):
            threading.Event().wait(0.3)  # user code that takes a while (GIL released)
            state["ended"] = True
        fut = jobrunner.Pool.default().submit_native(h.exit_coop_job, 1)
        fut.add_done_callback(slow)
        assert h.exit_await_started(1, 30000) == 1
    """
    proc = run_child(code, timeout=DEADLINE)
    assert proc.returncode == 0, proc.stderr
    _no_crash(proc.stderr)
    assert "callback ended before the last handler: True" in proc.stdout, proc.stdout
