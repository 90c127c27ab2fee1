// Command log_ingest ingests log lines in Go: a generator (jobrunner.NewStream) yields
// the lines, a pipeline (jobrunner.NewPipeline with two ordered stages: parse, 4 at
// once, and filter, 2 at once, at most 256 items inside) turns them into records and
// keeps the interesting ones, and a batcher (main) flushes them in batches of 1,000
// records or every 100 ms, waiting with jobrunner.WaitAny over the pipeline's output
// and the stop token (the signal context), with a timeout, then reading with TryNext,
// and hands each flushed batch to a writer job over a jobrunner.Chan of 2 (the sink).
// The same scenario as examples/log_ingest.rs, examples/c/log_ingest.c and
// examples/python/log_ingest.py.
//
// Run 1 reads 20,000 lines (the generator pauses 300 ms after line 10,250, so that the
// timer flush fires) and checks the records against a sequential filter. Run 2 reads
// lines forever until SIGINT: the program sends it to itself after its 3rd flush (with
// -wait it does not: press Ctrl-C), then stops the pipeline and the generator and
// checks that the generator ended cancelled and that no value was leaked. The program
// checks its results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./log_ingest
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

const (
	totalLines  = 20000
	pauseAfter  = 10250
	pauseFor    = 300 * time.Millisecond
	batchSize   = 1000
	flushEvery  = 100 * time.Millisecond
	maxInFlight = 256
	parseConc   = 4
	filterConc  = 2
)

// line is line i of the log.
func line(i int) string {
	level := "INFO"
	if i%50 == 0 {
		level = "ERROR"
	} else if i%10 == 0 {
		level = "WARN"
	}
	return fmt.Sprintf("svc-%d %s request %d took %d ms", i%7, level, i, (i*37)%500)
}

type record struct {
	seq     int
	service string
	level   string
	ms      int
}

// parse reads a line into a record.
func parse(s string) (record, error) {
	f := strings.Fields(s) // svc-N LEVEL request I took MS ms
	if len(f) != 7 {
		return record{}, fmt.Errorf("bad line %q", s)
	}
	seq, err1 := strconv.Atoi(f[3])
	ms, err2 := strconv.Atoi(f[5])
	if err := errors.Join(err1, err2); err != nil {
		return record{}, fmt.Errorf("bad line %q: %w", s, err)
	}
	return record{seq: seq, service: f[0], level: f[1], ms: ms}, nil
}

// keep says whether a record is kept.
func keep(r record) bool { return r.level != "INFO" || r.ms >= 50 }

// counts are what the run counts of the values it made and where they went.
type counts struct {
	made, delivered, dropped atomic.Int64
}

// ingest is one run: the generator, the pipeline, the feeder between them.
type ingest struct {
	gen  *jobrunner.Stream[string]
	pipe *jobrunner.Pipeline[string]
	out  *jobrunner.Output[record]
	fed  chan struct{} // closed when the feeder has stopped (the generator has ended)
	n    counts
}

// start starts a run on pool: lines 0..limit-1 (limit < 0: cycling forever), pausing
// after line pauseAt (-1: never). stop is the parent of everything's token.
func start(pool *jobrunner.Pool, stop context.Context, limit, pauseAt int) (*ingest, error) {
	in := &ingest{fed: make(chan struct{})}
	var err error
	in.gen, err = jobrunner.NewStream(pool, stop, 64, func(ctx context.Context, send func(string) error) error {
		for i := 0; limit < 0 || i < limit; i++ {
			in.n.made.Add(1)
			if err := send(line(i % totalLines)); err != nil {
				return err
			}
			if i == pauseAt {
				select { // a quiet moment
				case <-time.After(pauseFor):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	in.pipe, err = jobrunner.NewPipeline[string](pool, stop, jobrunner.WithMaxInFlight(maxInFlight))
	if err != nil {
		in.gen.Close()
		return nil, err
	}
	parsed := jobrunner.Stage(in.pipe, parseConc, true, func(_ context.Context, s string) (record, bool, error) {
		r, err := parse(s)
		return r, true, err
	})
	in.out = jobrunner.Stage(parsed, filterConc, true, func(_ context.Context, r record) (record, bool, error) {
		if !keep(r) {
			in.n.dropped.Add(1)
			return r, false, nil
		}
		return r, true, nil
	})
	// The feeder: the pipeline's source is the generator.
	go func() {
		defer close(in.fed)
		for s := range in.gen.C() {
			if err := in.pipe.Push(stop, s); err != nil {
				in.gen.Close() // the pipeline stopped: so does the generator
				for range in.gen.C() {
				}
				return
			}
		}
		in.pipe.CloseInput()
	}()
	return in, nil
}

// batcher collects the records into batches; flush gets each batch and why.
type batcher struct {
	pending []record
	first   time.Time // when the pending batch's first record came
	flushes map[string]int
	onFlush func(batch []record, why string)
}

func (b *batcher) flush(why string) {
	if len(b.pending) == 0 {
		return
	}
	b.flushes[why]++
	b.onFlush(b.pending, why)
	b.pending = nil
}

// run reads the output until its end or stop; it returns the output's end (nil: the
// input ended) or stop's error.
func (b *batcher) run(stop context.Context, in *ingest) error {
	for {
		timeout := time.Duration(-1) // nothing pending: no timer
		if len(b.pending) > 0 {
			timeout = max(time.Until(b.first.Add(flushEvery)), 0)
		}
		_, err := jobrunner.WaitAny(stop, timeout, in.out.Waitable())
		switch {
		case errors.Is(err, jobrunner.ErrTimeout):
			b.flush("timer")
			continue
		case err != nil: // the stop token
			b.flush("stop")
			return err
		}
		for { // ready: the non-blocking reads
			r, err := in.out.TryNext()
			if errors.Is(err, jobrunner.ErrEmpty) {
				break
			}
			if errors.Is(err, jobrunner.ErrClosed) {
				b.flush("end")
				return nil
			}
			if err != nil {
				b.flush("stop")
				return err
			}
			in.n.delivered.Add(1)
			if len(b.pending) == 0 {
				b.first = time.Now()
			}
			b.pending = append(b.pending, r)
			if len(b.pending) == batchSize {
				b.flush("size")
			} else if time.Since(b.first) >= flushEvery {
				b.flush("timer")
			}
		}
	}
}

func main() {
	wait := flag.Bool("wait", false, "run 2: wait for Ctrl-C instead of sending SIGINT after 3 flushes")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("log_ingest: FAILED: ")

	pool, err := jobrunner.NewPool(jobrunner.WithThreads(4))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	fmt.Printf("log_ingest: %d lines; parse (%d at once) and filter (%d at once), both ordered; batches of %d records or every %d ms\n",
		totalLines, parseConc, filterConc, batchSize, flushEvery.Milliseconds())

	fullRun(pool)
	interruptedRun(pool, *wait)
	if n := jobrunner.HeldValues(); n != 0 {
		log.Fatalf("%d values still held by C at the end", n)
	}
	fmt.Println("log_ingest: ok")
}

// fullRun is run 1.
func fullRun(pool *jobrunner.Pool) {
	stop, cancel := context.WithCancel(context.Background()) // never cancelled in this run
	defer cancel()
	in, err := start(pool, stop, totalLines, pauseAfter)
	if err != nil {
		log.Fatal(err)
	}
	// The sink: a writer job takes each flushed batch from a jobrunner channel of 2
	// (blocked on it, the job lends its worker's place to a spare) and "writes" it.
	sink := jobrunner.NewChan[[]record](2)
	defer sink.Free()
	writer, err := jobrunner.Submit(pool, stop, func(ctx context.Context) ([]record, error) {
		var written []record
		for {
			batch, err := sink.Recv(ctx)
			if errors.Is(err, jobrunner.ErrClosed) {
				return written, nil
			} else if err != nil {
				return nil, err
			}
			written = append(written, batch...)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	b := &batcher{flushes: map[string]int{}, onFlush: func(batch []record, why string) {
		if len(batch) < 1 || len(batch) > batchSize {
			log.Fatalf("a batch of %d records", len(batch))
		}
		fmt.Printf("flush (%s): %d records, seq %d..%d\n", why, len(batch), batch[0].seq, batch[len(batch)-1].seq)
		if err := sink.Send(stop, append([]record(nil), batch...)); err != nil {
			log.Fatalf("the writer is gone: %v", err)
		}
	}}
	if err := b.run(stop, in); err != nil {
		log.Fatalf("the pipeline ended with %v", err)
	}
	sink.Close()
	got, err := writer.Wait(stop)
	if err != nil {
		log.Fatalf("the writer ended with %v", err)
	}
	writer.Close()
	<-in.fed
	in.pipe.Close()
	if err := in.gen.Err(); err != nil {
		log.Fatalf("the generator ended with %v", err)
	}

	var want []record
	for i := 0; i < totalLines; i++ {
		if r, err := parse(line(i)); err != nil {
			log.Fatal(err)
		} else if keep(r) {
			want = append(want, r)
		}
	}
	if len(got) != len(want) || len(got) != 18200 {
		log.Fatalf("kept %d records, want %d (18200)", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			log.Fatalf("record %d is %+v, want %+v", i, got[i], want[i])
		}
		if i > 0 && got[i].seq <= got[i-1].seq {
			log.Fatalf("record %d (seq %d) after seq %d: out of order", i, got[i].seq, got[i-1].seq)
		}
	}
	fmt.Printf("kept %d of %d lines, in order, the same as a sequential filter\n", len(got), totalLines)
	if b.flushes["size"] < 1 || b.flushes["timer"] < 1 || b.flushes["end"] != 1 {
		log.Fatalf("flushes %v: want at least one by size, one by the timer, exactly one at the end", b.flushes)
	}
	fmt.Println("flushes: by size, by the 100 ms timer, and one at the end")
	made, delivered, dropped := in.n.made.Load(), in.n.delivered.Load(), in.n.dropped.Load()
	if made != totalLines || made != delivered+dropped || jobrunner.HeldValues() != 0 {
		log.Fatalf("lines made %d, records delivered %d + dropped %d; values still held %d",
			made, delivered, dropped, jobrunner.HeldValues())
	}
}

// interruptedRun is run 2.
func interruptedRun(pool *jobrunner.Pool, wait bool) {
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT)
	defer cancel()
	in, err := start(pool, stop, -1, -1)
	if err != nil {
		log.Fatal(err)
	}
	sentAfter := 0
	b := &batcher{flushes: map[string]int{}}
	b.onFlush = func(batch []record, why string) {
		n := b.flushes["size"] + b.flushes["timer"]
		if why == "stop" || n != 3 || sentAfter != 0 {
			return
		}
		if wait {
			fmt.Printf("interrupted run: %d flushes; press Ctrl-C to stop\n", n)
			return
		}
		sentAfter = n
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			log.Fatal(err)
		}
	}
	err = b.run(stop, in)
	if !errors.Is(err, context.Canceled) {
		log.Fatalf("run 2 ended with %v, want the stop (context.Canceled)", err)
	}
	if wait {
		sentAfter = b.flushes["size"] + b.flushes["timer"]
	}
	// Stop the pipeline (Close waits for its running stages) and wait for the feeder,
	// which stops the generator: its channel closes once the producer job has ended.
	in.pipe.Close()
	<-in.fed
	if err := in.gen.Err(); !errors.Is(err, jobrunner.ErrCancelled) {
		log.Fatalf("the generator ended with %v, want cancelled", err)
	}
	if n := jobrunner.HeldValues(); n != 0 {
		log.Fatalf("%d values still held by C after the stop", n)
	}
	made, delivered, dropped := in.n.made.Load(), in.n.delivered.Load(), in.n.dropped.Load()
	fmt.Printf("interrupted run: %d lines made, %d records delivered, %d dropped by the filter, %d freed unread\n",
		made, delivered, dropped, made-delivered-dropped)
	fmt.Printf("interrupted run: SIGINT after %d flushes; stopped cleanly, the generator cancelled, nothing leaked\n", sentAfter)
}
