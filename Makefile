# jobrunner: the commands a developer and CI run (`make help` lists them).
#
#   make test    everything CI runs, in order, stopping at the first failure
#   make demo    build and run every example
#   make bench   the criterion benchmarks in benches/
#
# Needs only a Rust toolchain installed with rustup, with rustfmt and clippy; every
# target checks that first and says what to run when something is missing.
#
# `make test` is split into sub-targets so later issues can add theirs (C, Python, Go)
# to TEST_STEPS:  lint -> test-rust -> test-loom -> test-examples.

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

# Lines (fixed substrings) each example must print; `make test` fails for an example
# without any. The examples also check their own results and exit non-zero if wrong.
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

TEST_STEPS := lint test-rust test-loom test-examples

.PHONY: help check-tools test $(TEST_STEPS) demo bench

help:
	@echo 'make test           everything CI runs: $(TEST_STEPS)'
	@echo 'make demo           build and run every example ($(RUST_EXAMPLES))'
	@echo 'make bench          cargo bench: the criterion benchmarks in benches/'
	@echo 'make lint           cargo fmt --check, cargo clippy -D warnings'
	@echo 'make test-rust      unit, integration and doc tests (release), rustdoc -D warnings'
	@echo 'make test-loom      the loom models of the sleep protocol and job state machine'
	@echo 'make test-examples  run every example and check its output'

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

# $(call step,COMMAND): runs COMMAND, announcing it and how long it took. COMMAND must
# not contain commas (they split $(call) arguments) or single quotes (it is echoed in them).
define step
	@printf '\n==> %s\n' '$(1)'
	@start=$$(date +%s); $(1); printf '<== ok in %ss: %s\n' "$$(( $$(date +%s) - start ))" '$(1)'
endef

# --- make test ------------------------------------------------------------------------

test: $(TEST_STEPS)
	@printf '\nmake test: all steps passed (%s)\n' '$(TEST_STEPS)'

lint: check-tools
	$(call step,$(CARGO) fmt --all -- --check)
	$(call step,$(CARGO) clippy --all-targets -- -D warnings)

# Release mode: the stress tests run a million jobs. Doc tests (the README's samples too)
# share the release build. `--benches` runs every benchmark routine once, so they never rot.
test-rust: check-tools
	$(call step,$(CARGO) test --release --lib --bins --tests)
	$(call step,$(CARGO) test --release --doc)
	$(call step,$(CARGO) test --release --benches)
	$(call step,RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps)

# Without debuginfo: the models do not need it, and it only slows this separate build.
test-loom: check-tools
	$(call step,LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) RUSTFLAGS="$(LOOM_RUSTFLAGS)" CARGO_PROFILE_RELEASE_DEBUG=0 $(CARGO) test --release --lib --target-dir $(LOOM_TARGET_DIR))

test-examples: check-tools $(addprefix test-example-,$(RUST_EXAMPLES))

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

# --- make demo, make bench -------------------------------------------------------------

demo: check-tools
	$(CARGO) build --release $(addprefix --example ,$(RUST_EXAMPLES))
	@for example in $(RUST_EXAMPLES); do \
	  printf '\n==> example %s\n' "$$example"; \
	  $(CARGO) run --release --quiet --example "$$example"; \
	done

bench: check-tools
	$(CARGO) bench
