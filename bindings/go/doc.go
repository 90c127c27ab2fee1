// Package jobrunner is the Go binding of jobrunner, an embeddable work-stealing job
// runner whose one pool, semaphores and cancellation tree are shared by the C, Rust,
// Python and Go code of a process. It is a cgo binding of the C API
// (include/jobrunner.h).
//
// # Building
//
// Build the library first, at the repository root:
//
//	cargo build --release
//
// By default the package links target/release/libjobrunner.a, so programs are single
// self-contained binaries. With the build tag jobrunner_shared it links
// target/release/libjobrunner.so (by its soname libjobrunner.so.0, which `make lib`
// links; an rpath finds it at run time):
//
//	go test -tags jobrunner_shared ./...
//
// # Jobs
//
// Submit runs a Go function on a pool and returns a typed handle:
//
//	pool, err := jobrunner.NewPool(jobrunner.WithThreads(4))
//	...
//	defer pool.Close()
//	job, err := jobrunner.Submit(pool, ctx, func(ctx context.Context) (int, error) {
//		return 6 * 7, nil
//	})
//	...
//	v, err := job.Wait(ctx)
//
// The ctx given to Submit cancels the job when it is done; the function's own ctx
// carries the submit context's values and deadline and is done when the job is asked
// to stop (Job.Cancel, the submit context, a fail-fast group, a pool shut down with
// Cancel). Job.Done gives a channel for select. Errors are values: ErrCancelled,
// ErrShutdown, ErrFull, ErrTimeout, *JobError, *PanicError (a panic in a job is
// recovered, with its stack; the worker lives on).
//
// Groups (Pool.NewGroup) have errgroup's API on the C library's scheduler-aware
// groups; a Semaphore is the C library's, so a limit holds across languages; and
// SubmitNative runs a C function on the pool without entering Go.
//
// # Channels, streams, pipelines and select
//
// Chan is the C library's channel, for values C, Rust or Python code must see too.
// NewStream runs a producer function as a job and reads what it sends as a Go channel
// (Stream.C) plus an error (Stream.Err). NewPipeline and Stage build a typed pipeline
// whose stages run as short jobs, each with its own concurrency, ordered or not, with
// at most max_in_flight items inside; its output is a channel (Output.Out) or pulled
// (Output.Next). Every such value crosses C as a runtime/cgo.Handle, deleted exactly
// once (HeldValues counts the live ones). Go's select waits on Job.Done, Group.Done,
// Chan.RecvReady and SendReady, Stream.C, Output.Out and ctx.Done; WaitAny is the C
// library's jr_wait_any, for waiting as C code does, in one blocking call.
//
// # How Go crosses into C
//
// A Go job's C argument is its number in a table of Go tasks (never a Go pointer),
// submitted with fn_owns_arg; one exported trampoline runs every Go job and ends its Go
// side when the function returns, and the job's arg_free (a C shim) calls back into Go
// only for a job that never ran, to end it then: exactly once either way. The job's
// result stays in Go memory. A Submit job is over for Go once C's state is terminal
// too: told by the worker that ran it when it starts its next Go job (a job that
// succeeded; see jrgo_slot in cgo.go), by a sweeper every few milliseconds for a worker
// that runs no other Go job, by the worker's stop hook as it exits, or seen by a wait
// or State, or by a jr_job_on_done callback registered by the first Done of a job
// still going. The binding adds thread hooks to every pool it makes and to the global
// pool for this (they call into Go only as a worker exits with such a job). Each C
// handle sits in a struct with an idempotent Close and a finalizer as a safety net
// (for jobs, one finalizer per block of 64 handles); a handle is never freed while a
// call on another goroutine uses it, and Go jobs' handles are freed 64 at a time.
package jobrunner
