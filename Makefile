# jobrunner: the commands a developer and CI run (`make help` lists them).
#
#   make test      everything CI runs, in order, stopping at the first failure
#   make demo      build and run every example (Rust and C)
#   make bench     jobrunner against its peers, every language: bench/results.{md,json,png}
#   make install   the C library, header and pkg-config file, under PREFIX
#
# Needs a Rust toolchain installed with rustup, with rustfmt and clippy, and a C compiler
# (plus valgrind and pkg-config for `make test`); every target checks what it needs first
# and says what to run when something is missing.
#
# `make test` is split into sub-targets so later issues can add theirs (Python, Go) to
# TEST_STEPS:  lint -> test-header -> test-rust -> test-loom -> test-c -> test-examples
#              -> test-install.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# The steps of `make test` must run in the order given, even under `make -j`.
.NOTPARALLEL:
MAKEFLAGS += --no-builtin-rules --no-builtin-variables

CARGO ?= cargo

# The loom models build with `--cfg loom` (under which only the models and the code they
# check compile: see src/lib.rs, src/sync.rs) in a target dir of their own, so they never
# invalidate the normal build.
LOOM_TARGET_DIR ?= target/loom
LOOM_RUSTFLAGS ?= --cfg loom
# loom explores every interleaving with at most this many preemptions per execution.
# Measured on this 2-core machine: 2 takes under a second, 3 about 8 s (35 s when the
# machine is busy), 4 about 2 minutes (busy), and with no bound the sleep/wake models had
# not finished after 11 minutes. Deeper: make test-loom LOOM_MAX_PREEMPTIONS=4.
LOOM_MAX_PREEMPTIONS ?= 3

# Rust examples: every examples/*.rs except scratch files (examples/smoke*.rs).
RUST_EXAMPLES := $(filter-out smoke%,$(basename $(notdir $(wildcard examples/*.rs))))
EXAMPLE_OUT := target/examples
# An example that runs longer than this (seconds) has hung: fail instead of waiting.
EXAMPLE_TIMEOUT ?= 300

# --- the C library ---------------------------------------------------------------------

# The crate's version (Cargo.toml): the installed library's file name and the .pc file.
# build.rs derives the header's JR_VERSION_* macros and the soname from the same line.
VERSION := $(shell sed -n 's/^version = "\([^"]*\)"$$/\1/p' Cargo.toml | head -n 1)
VERSION_MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME := libjobrunner.so.$(VERSION_MAJOR)

# `cargo build --release` makes both libraries and include/jobrunner.h (build.rs).
RELEASE_DIR := target/release
STATIC_LIB := $(RELEASE_DIR)/libjobrunner.a
SHARED_LIB := $(RELEASE_DIR)/libjobrunner.so

# The C compiler, unless given on the command line or in the environment. (Not `?=`:
# --no-builtin-variables would drop make's own default of CC after this line is read.)
ifneq ($(filter default undefined,$(origin CC)),)
CC := cc
endif
PKG_CONFIG ?= pkg-config
VALGRIND ?= valgrind

# C tests (tests/c/*.c, each a program; tests/c/jr_test.h is their framework) and C
# examples (examples/c/*.c, scratch files examples/c/smoke*.c excepted), compiled against
# the generated header.
C_TESTS := $(basename $(notdir $(wildcard tests/c/*.c)))
C_EXAMPLES := $(filter-out smoke%,$(basename $(notdir $(wildcard examples/c/*.c))))
C_OUT := target/c
C_FLAGS := -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread
# What the static library needs from the system (rustc --print native-static-libs says
# -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc; cc adds libgcc_s and libc itself, and glibc
# has kept util and rt in libc since 2.34). The same list is Libs.private in jobrunner.pc.
C_STATIC_LINK := $(STATIC_LIB) -lpthread -ldl -lm
# The shared library, found at run time through the rpath. It is linked by its soname,
# libjobrunner.so.MAJOR, which the `lib` target links to cargo's libjobrunner.so.
C_SHARED_LINK := -L$(RELEASE_DIR) -ljobrunner -Wl,-rpath,$(CURDIR)/$(RELEASE_DIR)
C_ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
C_NO_FLAGS :=
# LeakSanitizer suppressions, one commented entry per deliberate process-lifetime
# allocation, used when tests/c/lsan.supp exists.
C_ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	$(if $(wildcard tests/c/lsan.supp),LSAN_OPTIONS=suppressions=$(CURDIR)/tests/c/lsan.supp)
# Errors and definitely or indirectly lost blocks fail a run; memory still reachable at
# exit (the global pool's threads, thread-locals) and "possibly lost" blocks do not. JR_TEST_SLOW
# shrinks the tests' stress loops (jr_test_scale in tests/c/jr_test.h).
C_VALGRIND := $(VALGRIND) --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --num-callers=40
C_VALGRIND_ENV := JR_TEST_SLOW=1
# Lines of a failed C test's output worth repeating after the summary (CI logs show the
# end): failed checks, valgrind's and the sanitizers' reports.
C_FAILURE_LINES := ^FAILED |: .*[Ff]ail|definitely lost in|indirectly lost in|ERROR SUMMARY: [1-9]|^==[0-9]+==ERROR|^SUMMARY:|runtime error
# A C test program that runs longer than this (seconds, under valgrind too) has hung.
C_TEST_TIMEOUT ?= 600

# `make install`: PREFIX/include/jobrunner.h, PREFIX/lib/libjobrunner.{a,so*} and
# PREFIX/lib/pkgconfig/jobrunner.pc. DESTDIR stages the files for a package.
PREFIX ?= /usr/local
DESTDIR ?=
INCLUDEDIR ?= $(PREFIX)/include
LIBDIR ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# In jobrunner.pc, directories under the prefix are written relative to ${prefix}.
PC_LIBDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
INSTALL_TEST_DIR := target/install-test

# Lines (fixed substrings) each example must print; `make test` fails for an example
# without any. The examples also check their own results and exit non-zero if wrong.
# A Rust example examples/NAME.rs has EXPECT_NAME; a C example examples/c/NAME.c has
# EXPECT_c_NAME (the languages share example names, not their output).
EXPECT_worker_pool := \
	'try_submit: queue full' \
	'submit with a 30 ms timeout: timed out' \
	'submit: task 6 got in' \
	'cancel: tasks 16-19 ended Cancelled at once, without running' \
	'cancel: tasks 14 and 15 stopped and ended Cancelled' \
	'shutdown(Drain): completed 3, cancelled 0, still running 0, still queued 0' \
	'submit after shutdown: refused (Shutdown)' \
	'all 20 jobs accounted for: 14 ok, 6 cancelled'
# N ok / M cancelled vary with the machine's timing: only the fixed parts are checked.
EXPECT_rate_limited_fanout := \
	'rate_limited_fanout: 200 calls through a semaphore of 8 on a pool of 16 threads' \
	'progress: 200/200 calls ended' \
	'200 calls: ' \
	'cancelled, at most 8 at once' \
	'accounting checked: ok + cancelled = 200, never more than 8 at once, every permit returned'
EXPECT_cleanup_daemon := \
	'cleanup_daemon: 100 sessions, 50 already expired; sweeping every 20 ms' \
	'sweep 0: removed 50 expired sessions' \
	'main: 5 sweeps seen, shutting the pool down (Drain)' \
	'shutdown(Drain): complete true, ticker stopped: true' \
	'cleanup_daemon: the periodic job stopped with the pool'
EXPECT_deadline := \
	'quick step (3 ms of work, 2 s deadline): Ok, token reason none' \
	'slow step (up to 5 s of work, 50 ms deadline): Cancelled(DeadlineExceeded), token reason DeadlineExceeded' \
	'slow step: the job saw ctx.is_cancelled(), reason DeadlineExceeded, and stopped early' \
	'step under a passed deadline: Cancelled(DeadlineExceeded), token reason DeadlineExceeded, ran: no' \
	'deadline: ok'
EXPECT_fanout_group := \
	'fan-in: 20 items received; item 0 came last, after the other 19' \
	'group.wait(): Ok; sum of squares 0..19 = 2470; at most 3 running at once' \
	'group.wait(): Failed; first error: code 42, "item 3: bad response"' \
	'fail-fast: 1 failed, 9 cancelled (3 stopped while running, 6 never started)' \
	'fanout_group: ok'
# How many jobs end during the drain rather than before it varies: that line is not checked.
EXPECT_graceful_shutdown := \
	'main: got SIGTERM, the shutdown token is cancelled' \
	'shutdown(Drain): complete true, cancelled 0, still running 0, still queued 0' \
	'submit after shutdown: refused (Shutdown)' \
	'drained: 8 of 8 requests completed; cancelled: 4 of 4 handlers stopped' \
	'graceful_shutdown: ok'
# The flushes in between vary with the machine's timing: only the fixed lines are checked
# (the example checks the flushes itself).
EXPECT_log_ingest := \
	'log_ingest: 20000 lines; parse (4 at once) and filter (2 at once), both ordered; batches of 1000 records or every 100 ms' \
	'kept 18200 of 20000 lines, in order, the same as a sequential filter' \
	'flushes: by size, by the 100 ms timer, and one at the end' \
	'interrupted run: SIGINT after 3 flushes; stopped cleanly, the generator cancelled, nothing leaked' \
	'log_ingest: ok'

# The C examples (examples/c/NAME.c): EXPECT_c_NAME.
EXPECT_c_worker_pool := \
	'worker_pool: 2 worker threads, queue_capacity 4, 100 jobs' \
	'nonblocking submit of job 6: JR_E_FULL' \
	'submit of job 6 with a 20 ms timeout: JR_E_TIMEOUT' \
	'results: 100 taken, sum of squares 0..99 = 328350' \
	'submit after shutdown: JR_E_SHUTDOWN' \
	'worker_pool: ok'
EXPECT_c_rate_limited_fanout := \
	'rate_limited_fanout: 200 calls through a semaphore of 8 on a pool of 16 threads' \
	'progress: 200/200 calls ended' \
	'cancelled, at most 8 at once' \
	'accounting checked: ok + cancelled = 200, never more than 8 at once, every permit returned'
EXPECT_c_cleanup_daemon := \
	'cleanup_daemon: 100 sessions, 50 already expired; sweeping every 20 ms' \
	'sweep 0: removed 50 expired sessions' \
	'main: 5 sweeps seen, shutting the pool down (Drain)' \
	'shutdown(Drain): complete true, ticker stopped: true' \
	'delayed job: ran no sooner than 60 ms after it was submitted' \
	'cleanup_daemon: the periodic job stopped with the pool'
EXPECT_c_deadline := \
	'quick step (3 ms of work, 2 s deadline): JR_OK' \
	'slow step (up to 5 s of work, 50 ms deadline): JR_E_CANCELLED' \
	'slow step: the job saw jr_ctx_is_cancelled, reason JR_REASON_DEADLINE, and stopped early' \
	'step under a passed deadline: JR_E_CANCELLED' \
	'deadline: ok'
EXPECT_c_fanout_group := \
	'jr_group_wait: JR_OK: success; sum of squares 0..19 = 2470; at most 3 running at once' \
	'first error: code 42, "item 3: bad response"' \
	'items 0-2 saw jr_ctx_is_cancelled with reason JR_REASON_SIBLING_FAILED' \
	'fanout_group: ok'
EXPECT_c_log_ingest := $(EXPECT_log_ingest)
EXPECT_c_graceful_shutdown := \
	'main: got SIGTERM, the shutdown token is cancelled' \
	'submit after shutdown: JR_E_SHUTDOWN' \
	'drained: 8 of 8 requests completed; cancelled: 4 of 4 handlers stopped' \
	'graceful_shutdown: ok'

TEST_STEPS := lint test-header test-rust test-loom test-c test-rust-valgrind test-python test-go test-examples test-install test-bench
C_TEST_STEPS := test-c-static test-c-shared test-c-valgrind test-c-asan test-c-readme

.PHONY: help check-tools check-cc check-c-tests test test-python-dev $(TEST_STEPS) $(C_TEST_STEPS) \
	demo demo-rust demo-c demo-python demo-go check-python check-go bench bench-venv bench-tbb soak \
	lib install uninstall stress test-rust-valgrind loom-full sanitize

help:
	@echo 'make test           everything CI runs: $(TEST_STEPS)'
	@echo 'make demo           build and run every example ($(RUST_EXAMPLES); C: $(C_EXAMPLES))'
	@echo 'make bench          every workload, jobrunner against its peers in every language: bench/results.md (QUICK=1: small sizes)'
	@echo 'make soak           DURATION seconds (default 60) of a mixed load at 80% of capacity: throughput, RSS and p99 over time (SOAK_OUT=bench: the committed run)'
	@echo 'make lint           cargo fmt --check, cargo clippy -D warnings (with and without capi)'
	@echo 'make test-header    include/jobrunner.h as committed is what the build generates'
	@echo 'make test-rust      unit, integration and doc tests (release), rustdoc -D warnings'
	@echo 'make test-model     the C ABI against its model, MODEL_CASES random call sequences (part of test-rust, deeper)'
	@echo 'make test-loom      the loom models of every hand-made protocol (LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS))'
	@echo 'make test-rust-valgrind  every tests/*.rs binary under valgrind memcheck (JR_TEST_SLOW=1): no error, nothing definitely or indirectly lost'
	@echo 'make loom-full      the loom models without a preemption bound (hours; not in make test)'
	@echo 'make sanitize       the Rust tests under ASan and TSan (nightly + rust-src; not in make test, which needs stable only)'
	@echo 'make test-c         the C tests (tests/c/): $(C_TEST_STEPS)'
	@echo 'make test-python    the pytest suite of the Python binding (bindings/python/tests, in target/py-venv),'
	@echo '                    run plain, then under python -X dev with warnings as errors'
	@echo 'make test-python-dev  only the python -X dev run of that suite'
	@echo 'make test-go        the Go binding: gofmt, go vet, go test -race, GC stress, shared build, examples'
	@echo 'make test-examples  run every example (Rust and C) and check its output'
	@echo 'make test-install   install into a temporary PREFIX, build a program with pkg-config'
	@echo 'make test-bench     make bench QUICK=1 into target/bench-quick: every bench program runs (no timing asserted)'
	@echo 'make stress         a stress campaign with fault injection: SEEDS=$(SEEDS) seeds of OPS=$(OPS) operations (SEED=N: replay one)'
	@echo 'make lib            cargo build --release: libjobrunner.{a,so} and include/jobrunner.h'
	@echo 'make install        install header, libraries and jobrunner.pc (PREFIX=$(PREFIX), DESTDIR)'
	@echo 'make uninstall      remove what make install installed (same PREFIX, DESTDIR)'

# --- toolchain ----------------------------------------------------------------------

RUSTUP_INSTALL := curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --component rustfmt,clippy

check-tools:
	@for tool in cargo rustc; do \
	  if ! command -v $$tool >/dev/null 2>&1; then \
	    echo "error: '$$tool' not found. Install Rust with rustup, then open a new shell:" >&2; \
	    echo "    $(RUSTUP_INSTALL)" >&2; \
	    exit 1; \
	  fi; \
	done
	@for sub in fmt clippy; do \
	  if ! $(CARGO) $$sub --version >/dev/null 2>&1; then \
	    echo "error: 'cargo $$sub' is not installed. Run:" >&2; \
	    echo "    rustup component add rustfmt clippy" >&2; \
	    exit 1; \
	  fi; \
	done

check-cc:
	@if ! command -v $(firstword $(CC)) >/dev/null 2>&1; then \
	  echo "error: C compiler '$(CC)' not found. Install one (or set CC=...):" >&2; \
	  echo "    apt-get install gcc" >&2; \
	  exit 1; \
	fi

# $(call step,COMMAND): runs COMMAND, announcing it and how long it took. COMMAND must
# not contain commas (they split $(call) arguments) or single quotes (it is echoed in them).
define step
	@printf '\n==> %s\n' '$(1)'
	@start=$$(date +%s); $(1); printf '<== ok in %ss: %s\n' "$$(( $$(date +%s) - start ))" '$(1)'
endef

# --- make test ------------------------------------------------------------------------

test: $(TEST_STEPS)
	@printf '\nmake test: all steps passed (%s)\n' '$(TEST_STEPS)'

# Clippy twice: with the default features, and without `capi`, the build a Rust dependent
# that turns the C layer off gets.
lint: check-tools
	$(call step,$(CARGO) fmt --all -- --check)
	$(call step,$(CARGO) clippy --all-targets -- -D warnings)
	$(call step,$(CARGO) clippy --all-targets --no-default-features -- -D warnings)

# The release libraries and the header; and libjobrunner.so.MAJOR, the soname by which
# programs linked with -ljobrunner ask for the shared library, beside cargo's .so.
lib: check-tools
	$(call step,$(CARGO) build --release --lib)
	@ln -sf libjobrunner.so $(RELEASE_DIR)/$(SONAME)

# The build has just regenerated include/jobrunner.h (build.rs); in a fresh clone (CI) a
# difference from the committed file means a commit changed src/ffi/ without the header.
test-header: lib
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "SKIPPED: not a git work tree, so the committed header cannot be compared (tests/header.rs still checks it against the generated one)"; \
	elif ! git ls-files --error-unmatch include/jobrunner.h >/dev/null 2>&1; then \
	  echo "error: include/jobrunner.h is generated by the build but not committed. Run:" >&2; \
	  echo "    git add include/jobrunner.h" >&2; \
	  exit 1; \
	elif ! git diff --exit-code --stat -- include/jobrunner.h; then \
	  echo "error: the committed include/jobrunner.h is stale: the build regenerated it from src/ffi/ (git diff include/jobrunner.h shows how). Commit it:" >&2; \
	  echo "    git add include/jobrunner.h" >&2; \
	  exit 1; \
	else \
	  echo "include/jobrunner.h: as committed, the header the build generates"; \
	fi

# Release mode: the stress tests run a million jobs. Doc tests (the README's samples too)
# share the release build. (The benches run in test-bench, at small sizes.)
test-rust: check-tools
	$(call step,$(CARGO) test --release --lib --bins --tests)
	$(call step,$(CARGO) test --release --doc)
	$(call step,RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps)

# Without debuginfo: the models do not need it, and it only slows this separate build.
# Without the `capi` feature: the models check the core, and the C layer and cbindgen
# would only lengthen this build.
test-loom: check-tools
	$(call step,LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) RUSTFLAGS="$(LOOM_RUSTFLAGS)" CARGO_PROFILE_RELEASE_DEBUG=0 $(CARGO) test --release --lib --no-default-features --target-dir $(LOOM_TARGET_DIR))

test-examples: check-tools $(addprefix test-example-,$(RUST_EXAMPLES)) \
	$(addprefix test-c-example-,$(C_EXAMPLES))

# Not .PHONY (make skips pattern rules for phony targets); no such file is ever made.
test-example-%: check-tools
	$(if $(strip $(EXPECT_$*)),,@echo "error: example '$*' has no expected output: add EXPECT_$* to the Makefile" >&2; exit 1)
	$(call step,$(CARGO) build --release --example $*)
	@mkdir -p $(EXAMPLE_OUT)
	$(call step,timeout $(EXAMPLE_TIMEOUT) $(CARGO) run --release --quiet --example $* | tee $(EXAMPLE_OUT)/$*.out)
	@for want in $(EXPECT_$*); do \
	  if ! grep -qF -- "$$want" $(EXAMPLE_OUT)/$*.out; then \
	    echo "error: example '$*' did not print: $$want (output: $(EXAMPLE_OUT)/$*.out)" >&2; \
	    exit 1; \
	  fi; \
	done
	@echo "example $*: output checked"

# A C example: compiled against the header and the static library, run, and its output
# checked against EXPECT_c_NAME.
test-c-example-%: lib check-cc
	$(if $(strip $(EXPECT_c_$*)),,@echo "error: C example '$*' has no expected output: add EXPECT_c_$* to the Makefile" >&2; exit 1)
	@mkdir -p $(C_OUT)/examples $(EXAMPLE_OUT)
	$(call step,$(CC) $(C_FLAGS) examples/c/$*.c -o $(C_OUT)/examples/$* $(C_STATIC_LINK))
	$(call step,timeout $(EXAMPLE_TIMEOUT) $(C_OUT)/examples/$* | tee $(EXAMPLE_OUT)/c_$*.out)
	@for want in $(EXPECT_c_$*); do \
	  if ! grep -qF -- "$$want" $(EXAMPLE_OUT)/c_$*.out; then \
	    echo "error: C example '$*' did not print: $$want (output: $(EXAMPLE_OUT)/c_$*.out)" >&2; \
	    exit 1; \
	  fi; \
	done
	@echo "C example $*: output checked"

# --- the C tests ------------------------------------------------------------------------
#
# Every tests/c/NAME.c is a program that ends by printing "N passed, N failed" and exits
# non-zero if a test failed. Each runs four ways, a step each:
#   test-c-static    linked with libjobrunner.a
#   test-c-shared    linked with libjobrunner.so (by its soname, through an rpath)
#   test-c-valgrind  the static build under valgrind memcheck: no error, nothing
#                    definitely lost
#   test-c-asan      rebuilt with AddressSanitizer (LeakSanitizer included) and UBSan
# A step runs every program to its end, prints "c-STEP: N passed, N failed" over them all,
# and fails if any program failed (a failed check, a crash, a valgrind or sanitizer
# error, a timeout). Output: target/c/tests/STEP/NAME.out.

test-c: $(C_TEST_STEPS)

check-c-tests: check-cc
	$(if $(C_TESTS),,@echo "error: no C tests: tests/c/*.c is empty" >&2; exit 1)

# $(call build-c-tests,DIR,FLAGS,LINK): compiles every C test into target/c/tests/DIR/,
# with the flags and link arguments in the variables named FLAGS and LINK (names, because
# a value with a comma cannot be passed to $(call)).
define build-c-tests
	@mkdir -p $(C_OUT)/tests/$(1)
	@for name in $(C_TESTS); do \
	  echo "$(CC) $(C_FLAGS) $($(2)) tests/c/$$name.c -o $(C_OUT)/tests/$(1)/$$name $($(3))"; \
	  $(CC) $(C_FLAGS) $($(2)) tests/c/$$name.c -o $(C_OUT)/tests/$(1)/$$name $($(3)); \
	done
endef

# $(call run-c-tests,DIR,STEP,RUNNER,ENV): runs every program in target/c/tests/DIR/ as
# `$(ENV) timeout ... $(RUNNER) PROGRAM` (variable names again), each to its end, then
# totals the programs' "N passed, N failed" lines. A program that failed without a failed
# test (a crash, a valgrind or sanitizer error, a timeout) counts as one failed test.
define run-c-tests
	@passed=0; failed=0; bad=''; \
	for name in $(C_TESTS); do \
	  program=$(C_OUT)/tests/$(1)/$$name; \
	  printf '\n==> %s%s\n' "$(if $(strip $($(4)) $($(3))),$(strip $($(4)) $($(3))) )" "$$program"; \
	  if $($(4)) timeout $(C_TEST_TIMEOUT) $($(3)) $$program > $$program.out 2>&1; then code=0; else code=$$?; fi; \
	  cat $$program.out; \
	  counts=$$(sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$$/\1 \2/p' $$program.out | tail -n 1); \
	  set -- $${counts:-0 0}; p=$$1; f=$$2; \
	  if [ "$$code" -ne 0 ]; then \
	    bad="$$bad $$name (exit $$code)"; \
	    if [ "$$f" -eq 0 ]; then f=1; fi; \
	  fi; \
	  passed=$$((passed + p)); failed=$$((failed + f)); \
	done; \
	printf '\n%s: %d passed, %d failed\n' '$(2)' "$$passed" "$$failed"; \
	if [ -n "$$bad" ]; then \
	  for name in $(C_TESTS); do \
	    case "$$bad" in *" $$name "*) ;; *) continue ;; esac; \
	    printf '\n--- %s: what failed ---\n' "$$name"; \
	    out=$(C_OUT)/tests/$(1)/$$name.out; \
	    if grep -q -E "$(C_FAILURE_LINES)" $$out; then \
	      grep -E -A12 "$(C_FAILURE_LINES)" $$out | head -n 60 || true; \
	    else \
	      tail -n 20 $$out; \
	    fi; \
	  done; \
	  echo "error: $(2):$$bad; output in $(C_OUT)/tests/$(1)/NAME.out" >&2; \
	  exit 1; \
	fi
endef

# The README's C quick-start (the first ```c block after "## The C API"), extracted,
# compiled warning-free, run and its output checked: the README cannot drift from the API.
test-c-readme: lib check-cc
	@mkdir -p $(C_OUT)
	@awk '/^## The C API/ { api = 1 } api && /^```c$$/ { code = 1; next } code && /^```$$/ { exit } code' \
	  README.md > $(C_OUT)/readme_quickstart.c
	@test -s $(C_OUT)/readme_quickstart.c || { echo "error: no C quick-start in README.md" >&2; exit 1; }
	$(call step,$(CC) $(C_FLAGS) $(C_OUT)/readme_quickstart.c -o $(C_OUT)/readme_quickstart $(C_STATIC_LINK))
	$(call step,$(C_OUT)/readme_quickstart | tee $(C_OUT)/readme_quickstart.out)
	@grep -qxF 'JR_OK: success: 144' $(C_OUT)/readme_quickstart.out || \
	  { echo "error: the README's C quick-start did not print 'JR_OK: success: 144'" >&2; exit 1; }

test-c-static: lib check-c-tests
	$(call build-c-tests,static,C_NO_FLAGS,C_STATIC_LINK)
	$(call run-c-tests,static,c-static,C_NO_FLAGS,C_NO_FLAGS)

test-c-shared: lib check-c-tests
	$(call build-c-tests,shared,C_NO_FLAGS,C_SHARED_LINK)
	$(call run-c-tests,shared,c-shared,C_NO_FLAGS,C_NO_FLAGS)

# Valgrind is on every machine this project runs on; where it is missing, say so.
test-c-valgrind: lib check-c-tests
ifeq ($(shell command -v $(VALGRIND)),)
	@echo "SKIPPED: valgrind not installed, the C tests did not run under memcheck. To run them: apt-get install valgrind"
else
	$(call build-c-tests,static,C_NO_FLAGS,C_STATIC_LINK)
	$(call run-c-tests,static,c-valgrind,C_VALGRIND,C_VALGRIND_ENV)
endif

# Whether $(CC) can build and run an AddressSanitizer program (the runtime comes with
# gcc on Debian: libasan, libubsan).
C_HAS_ASAN = $(shell probe=$$(mktemp) && \
	printf 'int main(void) { return 0; }\n' | $(CC) -x c - $(C_ASAN_FLAGS) -o $$probe >/dev/null 2>&1 && \
	$$probe && echo yes; rm -f $$probe)

test-c-asan: lib check-c-tests
	$(if $(C_HAS_ASAN),$(call build-c-tests,asan,C_ASAN_FLAGS,C_STATIC_LINK),@echo "SKIPPED: $(CC) cannot build with $(C_ASAN_FLAGS) (no sanitizer runtime), the C tests did not run under AddressSanitizer. To run them: apt-get install libasan8 libubsan1")
	$(if $(C_HAS_ASAN),$(call run-c-tests,asan,c-asan,C_NO_FLAGS,C_ASAN_ENV))

# --- make install -------------------------------------------------------------------------

# Installs what `make lib` built. In PREFIX/lib: libjobrunner.so.VERSION, the soname link
# libjobrunner.so.MAJOR to it, and libjobrunner.so (for -ljobrunner) to that.
install: lib
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/jobrunner.h $(DESTDIR)$(INCLUDEDIR)/jobrunner.h
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libjobrunner.a
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/libjobrunner.so.$(VERSION)
	ln -sf libjobrunner.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libjobrunner.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(PC_LIBDIR)|' \
	  -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	  jobrunner.pc.in > target/jobrunner.pc
	install -m 644 target/jobrunner.pc $(DESTDIR)$(PKGCONFIGDIR)/jobrunner.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/jobrunner.h $(DESTDIR)$(PKGCONFIGDIR)/jobrunner.pc \
	  $(addprefix $(DESTDIR)$(LIBDIR)/,libjobrunner.a libjobrunner.so $(SONAME) libjobrunner.so.$(VERSION))

# The program test-install builds with pkg-config, as a user of the installed library would.
define INSTALL_TEST_APP
#include <stdint.h>
#include <stdio.h>
#include <jobrunner.h>

static int32_t square(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)((intptr_t)arg * (intptr_t)arg);
    return 0;
}

int main(void) {
    jr_pool_options options = jr_pool_options_default();
    options.threads = 2;
    jr_pool *pool = NULL;
    jr_job *job = NULL;
    void *result = NULL;
    if (jr_pool_new(&options, &pool) != JR_OK ||
        jr_submit(pool, square, (void *)(intptr_t)7, NULL, &job) != JR_OK ||
        jr_job_wait(job, -1) != JR_OK || jr_job_take_result(job, &result) != JR_OK) {
        return 1;
    }
    jr_job_free(job);
    jr_pool_free(pool);
    printf("installed jobrunner %s (header %d.%d.%d): 7 * 7 = %d\n", jr_version(),
           JR_VERSION_MAJOR, JR_VERSION_MINOR, JR_VERSION_PATCH, (int)(intptr_t)result);
    return (intptr_t)result == 49 ? 0 : 1;
}
endef
export INSTALL_TEST_APP

# Installs into a temporary PREFIX, then builds a program the way the header's users
# will: `cc app.c $$(pkg-config --cflags --libs jobrunner)`, run with LD_LIBRARY_PATH
# pointing at PREFIX/lib (no rpath: pkg-config gives none, and a system prefix needs
# none), and checks it loads the library by its soname from there; then links the same
# program statically with the .pc file's Libs.private and runs it without any path; then
# stages an install with DESTDIR and uninstalls it.
test-install: lib check-cc
	@if ! command -v $(PKG_CONFIG) >/dev/null 2>&1; then \
	  echo "error: '$(PKG_CONFIG)' not found; it is needed to check the installed jobrunner.pc. Run:" >&2; \
	  echo "    apt-get install pkg-config" >&2; \
	  exit 1; \
	fi
	@rm -rf $(INSTALL_TEST_DIR) && mkdir -p $(INSTALL_TEST_DIR)
	$(call step,$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(INSTALL_TEST_DIR)/prefix)
	@printf '%s\n' "$$INSTALL_TEST_APP" > $(INSTALL_TEST_DIR)/app.c
	@cd $(INSTALL_TEST_DIR); \
	export PKG_CONFIG_PATH=$$PWD/prefix/lib/pkgconfig; \
	flags="$$($(PKG_CONFIG) --cflags --libs jobrunner)"; \
	echo "==> $(CC) app.c -o app $$flags"; \
	$(CC) -std=c99 -Wall -Wextra -Werror app.c -o app $$flags; \
	if ! readelf -d app | grep -F '[$(SONAME)]' >/dev/null; then \
	  echo "error: app does not ask for $(SONAME):" >&2; readelf -d app >&2; exit 1; \
	fi; \
	echo "==> LD_LIBRARY_PATH=$$PWD/prefix/lib ./app"; \
	LD_LIBRARY_PATH=$$PWD/prefix/lib ldd ./app | grep -F 'libjobrunner'; \
	if ! LD_LIBRARY_PATH=$$PWD/prefix/lib ldd ./app | grep -F "$(SONAME) => $$PWD/prefix/lib/$(SONAME)" >/dev/null; then \
	  echo "error: app does not load $(SONAME) from the installed prefix" >&2; exit 1; \
	fi; \
	want='installed jobrunner $(VERSION) (header $(VERSION)): 7 * 7 = 49'; \
	LD_LIBRARY_PATH=$$PWD/prefix/lib ./app | tee app.out; \
	grep -F "$$want" app.out >/dev/null || { echo "error: app did not print: $$want" >&2; exit 1; }; \
	libdir="$$($(PKG_CONFIG) --variable=libdir jobrunner)"; \
	libs="$$($(PKG_CONFIG) --static --libs-only-l jobrunner | sed 's/-ljobrunner//')"; \
	echo "==> $(CC) app.c -o app-static $$libdir/libjobrunner.a $$libs"; \
	$(CC) -std=c99 -Wall -Wextra -Werror $$($(PKG_CONFIG) --cflags jobrunner) app.c -o app-static \
	  "$$libdir/libjobrunner.a" $$libs; \
	if readelf -d app-static | grep -F libjobrunner >/dev/null; then \
	  echo "error: app-static still needs the shared library" >&2; exit 1; \
	fi; \
	echo "==> ./app-static"; \
	env -u LD_LIBRARY_PATH ./app-static | tee app-static.out; \
	grep -F "$$want" app-static.out >/dev/null || { echo "error: app-static did not print: $$want" >&2; exit 1; }
	$(call step,$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(INSTALL_TEST_DIR)/stage PREFIX=/opt/jobrunner)
	@cd $(INSTALL_TEST_DIR)/stage/opt/jobrunner; \
	for file in include/jobrunner.h lib/libjobrunner.a lib/libjobrunner.so.$(VERSION) lib/$(SONAME) \
	    lib/libjobrunner.so lib/pkgconfig/jobrunner.pc; do \
	  [ -e "$$file" ] || { echo "error: make install DESTDIR=... did not install $$file" >&2; exit 1; }; \
	done; \
	grep -qx 'prefix=/opt/jobrunner' lib/pkgconfig/jobrunner.pc || \
	  { echo "error: jobrunner.pc does not say prefix=/opt/jobrunner under DESTDIR" >&2; exit 1; }
	$(call step,$(MAKE) --no-print-directory uninstall DESTDIR=$(CURDIR)/$(INSTALL_TEST_DIR)/stage PREFIX=/opt/jobrunner)
	@if [ -n "$$(find $(INSTALL_TEST_DIR)/stage -type f -o -type l)" ]; then \
	  echo "error: make uninstall left files behind:" >&2; find $(INSTALL_TEST_DIR)/stage >&2; exit 1; \
	fi
	@echo "test-install: installed, built with pkg-config (shared and static), ran, uninstalled"

# --- make demo, make bench -------------------------------------------------------------

demo: demo-rust demo-c demo-python demo-go

demo-rust: check-tools
	$(CARGO) build --release $(addprefix --example ,$(RUST_EXAMPLES))
	@for example in $(RUST_EXAMPLES); do \
	  printf '\n==> example %s\n' "$$example"; \
	  $(CARGO) run --release --quiet --example "$$example"; \
	done

# Every C example, compiled against the header and the static library, then run.
# --- the Python binding ------------------------------------------------------------------

PYTHON ?= python3
PY_EXAMPLES := $(sort $(wildcard examples/python/*.py))

check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found. Install Python 3.11: apt-get install python3 python3-venv" >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) cannot make a venv. Run: apt-get install python3-venv" >&2; exit 1; }

# The pytest suite, in a venv of its own (target/py-venv, pytest installed on first use),
# against the library just built; it also runs and checks examples/python/. It runs
# twice: plain, then under python -X dev (see run-tests.sh and test-python-dev).
test-python: lib check-python
	$(call step,PYTHON=$(PYTHON) bindings/python/run-tests.sh)

demo-python: lib check-python
	@for example in $(PY_EXAMPLES); do \
	  printf '\n==> Python example %s\n' "$$example"; \
	  JOBRUNNER_LIBRARY=$(CURDIR)/target/release/libjobrunner.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(PYTHON) "$$example" || exit 1; \
	done

# --- the Go binding ----------------------------------------------------------------------

GO ?= go
GO_EXAMPLES := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard examples/go/*/main.go)))))

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { echo "error: '$(GO)' not found. Install Go 1.21 or newer: https://go.dev/dl/ (or apt-get install golang)" >&2; exit 1; }

# gofmt, go vet, go test -race, a GC-stress run, the tests against the shared library,
# then every Go example, run (each checks its own output and exits non-zero if wrong).
test-go: lib check-go
	$(call step,bindings/go/run-tests.sh)
	@for example in $(GO_EXAMPLES); do \
	  printf '\n==> Go example %s\n' "$$example"; \
	  (cd examples/go && root=$(CURDIR) && . $(CURDIR)/bindings/go/cgo-cache-key.sh && timeout $(EXAMPLE_TIMEOUT) $(GO) run ./$$example) || exit 1; \
	done

demo-go: lib check-go
	@for example in $(GO_EXAMPLES); do \
	  printf '\n==> Go example %s\n' "$$example"; \
	  (cd examples/go && root=$(CURDIR) && . $(CURDIR)/bindings/go/cgo-cache-key.sh && $(GO) run ./$$example) || exit 1; \
	done

demo-c: lib check-cc
	@mkdir -p $(C_OUT)/examples
	@for example in $(C_EXAMPLES); do \
	  echo "$(CC) $(C_FLAGS) examples/c/$$example.c -o $(C_OUT)/examples/$$example $(C_STATIC_LINK)"; \
	  $(CC) $(C_FLAGS) examples/c/$$example.c -o $(C_OUT)/examples/$$example $(C_STATIC_LINK); \
	done
	@for example in $(C_EXAMPLES); do \
	  printf '\n==> C example %s\n' "$$example"; \
	  $(C_OUT)/examples/$$example; \
	done

# make bench: every workload of bench/README.md for jobrunner and its peers, in every
# language, the systems taking turns run by run; bench/collect.py runs the programs
# BENCH_ROUNDS times in turn and writes $(BENCH_OUT)/results.{md,json,png}.
# QUICK=1: small sizes (under 2 minutes; make test runs it into target/bench-quick).
QUICK ?=
BENCH_ROUNDS ?= 5
BENCH_OUT ?= bench
BENCH_VENV := target/py-venv
BENCH_C_OUT := target/bench/c
# One shell command per bench program, as the driver runs them (bench/go/run.sh builds
# the Go bench before it runs it).
BENCH_PROGRAMS := \
	'$(CARGO) bench -q --bench workloads' \
	'$(CARGO) bench -q --bench latency' \
	'$(CARGO) bench -q --bench limits' \
	'$(CARGO) bench -q --bench pipeline' \
	'$(BENCH_C_OUT)/bench-c' \
	'JOBRUNNER_LIBRARY=$(CURDIR)/$(RELEASE_DIR)/libjobrunner.so PYTHONPATH=$(CURDIR)/bindings/python $(BENCH_VENV)/bin/python bindings/python/bench/bench.py' \
	'bench/go/run.sh'

bench: lib check-cc check-python check-go bench-venv bench-tbb
	$(call step,$(CARGO) bench --no-run --bench workloads --bench latency --bench limits --bench pipeline)
	$(call step,bench/c/build.sh $(BENCH_C_OUT))
	@printf '\n==> bench/collect.py: %s rounds of every bench program%s\n' '$(BENCH_ROUNDS)' '$(if $(QUICK), (QUICK))'
	$(BENCH_VENV)/bin/python bench/collect.py $(if $(QUICK),--quick) --runs $(BENCH_ROUNDS) --out $(BENCH_OUT) $(BENCH_PROGRAMS)

# The driver's chart needs matplotlib: installed into the venv the Python tests use.
bench-venv: check-python
	@[ -x $(BENCH_VENV)/bin/python ] || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || \
	  $(BENCH_VENV)/bin/python -m pip install --quiet matplotlib || { \
	  echo "error: could not install matplotlib into $(BENCH_VENV) (it draws bench/results.png). Run:" >&2; \
	  echo "    $(BENCH_VENV)/bin/python -m pip install matplotlib" >&2; exit 1; }

# oneTBB, the C++ peer: installed with apt-get when this user can; otherwise
# bench/c/build.sh builds without it and says so.
bench-tbb:
	@if [ -e /usr/include/oneapi/tbb/task_group.h ] || [ -e /usr/include/tbb/task_group.h ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "bench: installing libtbb-dev (oneTBB, the C++ peer) with apt-get"; \
	  { apt-get install -y -q libtbb-dev || { apt-get update -q && apt-get install -y -q libtbb-dev; }; } >/dev/null 2>&1 || \
	  echo "bench: apt-get could not install libtbb-dev: the oneTBB peer will be skipped"; \
	else \
	  echo "bench: oneTBB (libtbb-dev) is not installed: the oneTBB peer will be skipped. To include it, run:"; \
	  echo "    sudo apt-get install libtbb-dev"; \
	fi

# make test runs the whole bench at QUICK sizes (one round), so that no bench program rots;
# it asserts no timing, only that every program runs, checks its results and reports.
test-bench:
	$(call step,$(MAKE) --no-print-directory bench QUICK=1 BENCH_ROUNDS=1 BENCH_OUT=target/bench-quick)
	$(call step,$(MAKE) --no-print-directory soak DURATION=5 SOAK_CAPACITY_SECS=2 SOAK_OUT=target/soak-smoke)

# --- issue 9: py ---
# The Python suite only under python -X dev -X faulthandler, PYTHONASYNCIODEBUG=1 and
# every warning an error (make test-python runs it plain, then this way).
test-python-dev: lib check-python
	$(call step,PY_DEV_MODE=only PYTHON=$(PYTHON) bindings/python/run-tests.sh)

# --- issue 9: soak ---
# make soak DURATION=600: benches/soak.rs measures the capacity of a mixed load (every
# kind of job, the C ABI included) on the global pool, then runs it open-loop at
# SOAK_LOAD of that for DURATION seconds, printing JSON lines (target/soak/soak.jsonl);
# bench/soak.py writes SOAK_OUT/soak.{md,json,png}: throughput, RSS and p99 over time,
# and the RSS verdict. It fails if a request ended in the wrong state, a value was not
# released exactly once, the pool deadlocked, or RSS grew. SOAK_OUT defaults to
# target/soak so that a quick run leaves the committed 10-minute run in bench/ alone;
# `make soak DURATION=600 SOAK_OUT=bench` refreshes it. The mix includes the jobs that
# block their worker on a child they queued (channel, pipeline; they deadlocked the pool
# until spares stole before taking new work, see benches/soak.rs, Kind::is_blocking);
# SOAK_BLOCKING=0 leaves them out.
DURATION ?= 60
SOAK_LOAD ?= 0.8
SOAK_OUT ?= target/soak
SOAK_CAPACITY_SECS ?= 5
SOAK_BLOCKING ?= 1
SOAK_JSONL := target/soak/soak.jsonl

soak: check-tools check-python bench-venv
	$(call step,$(CARGO) bench --no-run --bench soak)
	@mkdir -p $(dir $(SOAK_JSONL)) $(SOAK_OUT)
	@printf '\n==> soak: %s s at %s of capacity; JSON lines in %s, report in %s\n' '$(DURATION)' '$(SOAK_LOAD)' '$(SOAK_JSONL)' '$(SOAK_OUT)'
	@rc=0; load=$$(cut -d' ' -f1-3 /proc/loadavg); \
	SOAK_DURATION=$(DURATION) SOAK_LOAD=$(SOAK_LOAD) SOAK_CAPACITY_SECS=$(SOAK_CAPACITY_SECS) \
	  SOAK_BLOCKING=$(SOAK_BLOCKING) $(CARGO) bench -q --bench soak > $(SOAK_JSONL) || rc=$$?; \
	$(BENCH_VENV)/bin/python bench/soak.py --out $(SOAK_OUT) --load-before "$$load" $(SOAK_JSONL) || rc=$${rc/#0/1}; \
	exit $$rc

# --- issue 9: stress ---
# The stress suite with fault injection (tests/stress.rs). `make test` runs it within
# test-rust, at its defaults: 20 seeds of 20,000 operations. `make stress` runs a campaign
# of SEEDS seeds of OPS operations each, from seed FIRST; SEED=N replays seed N alone (a
# failing seed prints this command). Each seed prints a line; the campaign, its totals.
SEEDS ?= 200
OPS ?= 20000
FIRST ?= 1
SEED ?=
stress: check-tools
	$(call step,STRESS_SEEDS=$(SEEDS) STRESS_OPS=$(OPS) STRESS_FIRST_SEED=$(FIRST) $(if $(SEED),STRESS_SEED=$(SEED)) $(CARGO) test --release --test stress -- --nocapture)

# --- issue 9: model-based tests of the C ABI ---
# tests/capi_model.rs runs in test-rust with its default case count (about a minute on
# a loaded 2-core machine); this runs it deeper, printing what the calls returned.
# make test-model MODEL_CASES=20000
MODEL_CASES ?= 5000
.PHONY: test-model
test-model: check-tools
	$(call step,PROPTEST_CASES=$(MODEL_CASES) $(CARGO) test --release --test capi_model -- --nocapture)

# --- issue 9: memory and race tools ---

# Every integration test binary (tests/*.rs, found in cargo's JSON output: a new file is
# picked up) under valgrind memcheck, two at a time, with JR_TEST_SLOW=1 (tests/common:
# small stress loops, stretched waits, the few timing tests skipped). A failed test, a
# memcheck error or a block definitely or indirectly lost fails it. Says SKIPPED when
# valgrind is not installed.
test-rust-valgrind: check-tools
	$(call step,CARGO=$(CARGO) VALGRIND=$(VALGRIND) tests/run-valgrind.sh)

# The loom models with no bound on preemptions: every interleaving. Not in `make test`:
# the sleep/wake models alone run for hours. One model at a time, each reporting as it
# ends; LOOM_FULL_FILTER selects models by name (e.g. LOOM_FULL_FILTER=group::).
LOOM_FULL_FILTER ?=
loom-full: check-tools
	$(call step,env -u LOOM_MAX_PREEMPTIONS JR_LOOM_FULL=1 RUSTFLAGS="$(LOOM_RUSTFLAGS)" CARGO_PROFILE_RELEASE_DEBUG=0 $(CARGO) test --release --lib --no-default-features --target-dir $(LOOM_TARGET_DIR) -- --test-threads=1 $(LOOM_FULL_FILTER))

# The Rust tests under AddressSanitizer and ThreadSanitizer (tests/run-sanitizers.sh):
# nightly with rust-src, std rebuilt instrumented. Without them it says what is missing
# and the command that installs it, and succeeds. SANITIZERS=address or thread: one.
SANITIZERS ?= address thread
sanitize:
	$(call step,CARGO=$(CARGO) tests/run-sanitizers.sh $(SANITIZERS))
