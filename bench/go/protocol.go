package main

// The bench protocol (bench/PROTOCOL.md): the BENCH_* settings, the JSON line of one
// measured run, and the rounds every workload runs its systems in.

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// config holds the BENCH_* settings of this invocation.
type config struct {
	quick   bool     // BENCH_QUICK=1: small sizes
	runs    int      // BENCH_RUNS: measured runs per system per workload (default 5)
	threads int      // BENCH_THREADS: GOMAXPROCS and the pool's threads (default 2)
	only    []string // BENCH_ONLY: the workload ids to run (empty: all)
}

func configFromEnv() (config, error) {
	cfg := config{quick: os.Getenv("BENCH_QUICK") == "1", runs: 5, threads: 2}
	for _, v := range []struct {
		name string
		to   *int
	}{{"BENCH_RUNS", &cfg.runs}, {"BENCH_THREADS", &cfg.threads}} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("%s=%q: not a positive number", v.name, s)
		}
		*v.to = n
	}
	if s := os.Getenv("BENCH_ONLY"); s != "" {
		for _, w := range strings.Split(s, ",") {
			cfg.only = append(cfg.only, strings.TrimSpace(w))
		}
	}
	return cfg, nil
}

// wants reports whether the workload is to run (BENCH_ONLY).
func (c config) wants(workload string) bool {
	if len(c.only) == 0 {
		return true
	}
	for _, w := range c.only {
		if w == workload {
			return true
		}
	}
	return false
}

// size is full normally, full/10 under BENCH_QUICK=1.
func (c config) size(full int) int {
	if c.quick {
		return full / 10
	}
	return full
}

// sample is one measured run of one system on one workload: one JSON line.
type sample struct {
	Workload      string  `json:"workload"`
	System        string  `json:"system"`
	Ours          bool    `json:"ours"`
	Unit          string  `json:"unit"`
	Value         float64 `json:"value"`
	LowerIsBetter bool    `json:"lower_is_better"`
	Detail        string  `json:"detail,omitempty"`
}

// emit prints the sample as a JSON line on stdout, and for humans on stderr.
func (s sample) emit() {
	line, err := json.Marshal(s)
	if err != nil {
		fail("encoding a sample: %v", err)
	}
	fmt.Println(string(line))
	fmt.Fprintf(os.Stderr, "  %-24s %-46s %12.3f %s  %s\n", s.Workload, s.System, s.Value, s.Unit, s.Detail)
}

// rounds runs one workload's systems: one warm-up run of each (measured false: it
// prints nothing), then cfg.runs rounds in which each runs once, in the order given
// (A B C A B C ...). A system runs once per call, checks its result and, when measured,
// emits its samples. The heap is collected before each run, so that one system's
// garbage is not collected on the next one's time.
func rounds(cfg config, systems ...func(measured bool)) {
	for _, run := range systems {
		runtime.GC()
		run(false)
	}
	for i := 0; i < cfg.runs; i++ {
		for _, run := range systems {
			runtime.GC()
			run(true)
		}
	}
}

// thousands formats n with thousands separators: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
