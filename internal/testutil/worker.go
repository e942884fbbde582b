package testutil

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/worker"
)

// Worker is a real worker running for a test.
type Worker struct {
	ID string
	// Stdout holds what the worker wrote to stdout: zerolog JSON lines.
	Stdout *SyncBuffer
	nc     *nats.Conn
	stop   context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

// Stop shuts the worker down as SIGTERM would and waits for it to drain,
// then flushes its connection: everything the worker published has reached
// the server, ahead of anything the test publishes after Stop.
func (w *Worker) Stop(t testing.TB) {
	t.Helper()
	w.stop()
	select {
	case <-w.done:
		if w.err != nil {
			t.Errorf("worker %s: %v", w.ID, w.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("worker %s did not stop", w.ID)
	}
	if err := w.nc.Flush(); err != nil && !w.nc.IsClosed() {
		t.Errorf("worker %s: flush: %v", w.ID, err)
	}
}

// Kill cuts the worker off NATS at once, as a crash would: it acks,
// hands back and publishes nothing more.
func (w *Worker) Kill() { w.nc.Close() }

// WorkerOptions adjust StartWorkerWith.
type WorkerOptions struct {
	ID       string
	Pool     string
	Parallel int
	// ContextSize defaults to 512 tokens per slot.
	ContextSize  int
	DrainTimeout time.Duration
	AckWait      time.Duration
	MaxDeliver   int
	MaxQueued    int
	Replicas     int
	Metrics      *worker.Metrics
	// Engine replaces the real engine, for tests that inject a fault.
	Engine worker.Engine
	// NATS, when its URL is set, is how the worker connects (credentials,
	// TLS) instead of natsURL.
	NATS natsconn.Config
}

// StartWorker runs a real worker (the real engine on the shared model,
// 4 slots, one thread) against natsURL until the test ends, and waits until
// it is ready.
func StartWorker(t testing.TB, natsURL string) *Worker {
	return StartWorkerWith(t, natsURL, WorkerOptions{})
}

// StartWorkerWith runs a worker with options.
func StartWorkerWith(t testing.TB, natsURL string, o WorkerOptions) *Worker {
	t.Helper()
	if o.ID == "" {
		o.ID = "test-worker"
	}
	if o.Parallel == 0 {
		o.Parallel = 4
	}
	if o.ContextSize == 0 {
		o.ContextSize = 512
	}
	eng := o.Engine
	if eng == nil {
		e, err := engine.Load(engine.Config{ModelPath: ModelPath(t), Parallel: o.Parallel, ContextSize: o.ContextSize, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		eng = e
	}
	if o.NATS.URL == "" {
		o.NATS.URL = natsURL
	}
	nc := ConnectWith(t, o.NATS)
	out := &SyncBuffer{}
	log := zerolog.New(out).With().Timestamp().Str("worker_id", o.ID).Logger()
	life := &narration.LifecycleSink{}
	life.Attach(nc)
	w, err := worker.New(worker.Config{WorkerID: o.ID, Pool: o.Pool, Slots: o.Parallel, DrainTimeout: o.DrainTimeout, AckWait: o.AckWait, MaxDeliver: o.MaxDeliver, MaxQueued: o.MaxQueued, Replicas: o.Replicas, Metrics: o.Metrics},
		nc, eng, narration.New(log, o.ID), life, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Worker{ID: o.ID, Stdout: out, nc: nc, stop: cancel, done: make(chan struct{})}
	go func() {
		h.err = w.Run(ctx)
		close(h.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(60 * time.Second):
			t.Errorf("worker %s did not stop", o.ID)
		}
	})
	if !out.WaitFor(`"action":"ready"`, 30*time.Second) {
		t.Fatalf("worker %s not ready; stdout:\n%s", o.ID, out.Bytes())
	}
	return h
}

// SyncBuffer is a bytes.Buffer safe for one writer and many readers, who
// can wait for what they expect to be written.
type SyncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed and replaced at each write
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// WaitFor waits until the buffer contains s, for at most timeout.
func (b *SyncBuffer) WaitFor(s string, timeout time.Duration) bool {
	expired := time.After(timeout)
	for {
		b.mu.Lock()
		if bytes.Contains(b.buf.Bytes(), []byte(s)) {
			b.mu.Unlock()
			return true
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		select {
		case <-written:
		case <-expired:
			return false
		}
	}
}

// Bytes returns a copy of what was written.
func (b *SyncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
