// Package worker takes execute jobs from NATS and runs them on an engine:
// it pulls only as many jobs as it has free slots from its pool's durable
// consumer, publishes each job's events on jobs.events.<job_id>, answers
// cancels on jobs.cancel.<job_id>, and on shutdown finishes or hands back
// what it runs.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
)

// Engine is what a worker needs of internal/engine; tests that must inject
// a fault give their own.
type Engine interface {
	Info() engine.Info
	Tokenize(text string) (engine.Prompt, error)
	RenderChat(msgs []engine.Message) (string, error)
	Generate(ctx context.Context, req engine.Request, hooks engine.Hooks) (engine.Result, error)
}

// Config is a worker's identity and limits.
type Config struct {
	WorkerID string
	// Pool is the worker's pool; empty is the default pool on jobs.execute.
	Pool string
	// Slots is how many jobs run at once: the engine's parallel sequences.
	Slots int
	// ProgressEvery is how many tokens pass between token_progress events.
	ProgressEvery int
	// DrainTimeout is how long shutdown waits for running jobs before it
	// hands them back to the queue.
	DrainTimeout time.Duration
	// EventsMaxAge is how long the events stream keeps a job's events.
	EventsMaxAge time.Duration
	// Metrics, when set, receives the worker's measures.
	Metrics *Metrics
	// AckWait is how long a job may go unacknowledged before the queue
	// gives it to another worker (jobs.AckWait when 0). It belongs to the
	// pool's consumer: every worker of a pool must use the same.
	AckWait time.Duration
	// Version is the worker binary's version, told to discovery.
	Version string
	// MaxDeliver is how many attempts a job gets (jobs.MaxDeliver when
	// 0); past them it ends with RETRIES_EXHAUSTED. A hand-back on
	// shutdown is no attempt.
	MaxDeliver int
	// MaxQueued bounds the jobs held for each pool, queued or running (0:
	// no bound); it is set on the JOBS stream, so it is the same for every
	// pool and the last worker to start sets it.
	MaxQueued int
	// Replicas is how many servers of a NATS cluster hold each stream and
	// the pool's consumer.
	Replicas int
}

// Defaults of a Config's zero fields.
const (
	DefaultProgressEvery = 10
	DefaultDrainTimeout  = 30 * time.Second
)

// Worker runs jobs. Make one with New and call Run once.
type Worker struct {
	cfg       Config
	nc        *nats.Conn
	js        jetstream.JetStream
	engine    Engine
	narrator  *narration.Narrator
	lifecycle narration.Sink // where lifecycle narration goes besides stdout
	log       zerolog.Logger

	events  jetstream.Stream
	cancels jetstream.Stream

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
	jobs    sync.WaitGroup // running jobs
	// answers counts the answers to cancels of jobs not running here; a
	// callback adds to it only while answering holds, under mu, so none
	// adds once stopAnswering waits.
	answers   sync.WaitGroup
	answering bool
}

// New makes a worker. lifecycle receives lifecycle narration (besides
// stdout).
func New(cfg Config, nc *nats.Conn, eng Engine, narrator *narration.Narrator, lifecycle narration.Sink, log zerolog.Logger) (*Worker, error) {
	if cfg.Slots <= 0 {
		cfg.Slots = eng.Info().Parallel
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = jobs.AckWait
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = jobs.MaxDeliver
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		return nil, err
	}
	return &Worker{
		cfg: cfg, nc: nc, js: js, engine: eng, narrator: narrator, lifecycle: lifecycle,
		log:       log,
		running:   make(map[string]context.CancelCauseFunc),
		answering: true,
	}, nil
}

// Causes of a job's context ending, read back with context.Cause.
var (
	errCancelled = errors.New("cancelled by request")
	errTimeout   = errors.New("timed out")
	errShutdown  = errors.New("worker shutting down")
)

// Run sets up the streams and the pool's consumer, takes jobs until ctx
// ends, then stops taking jobs and drains: running jobs get DrainTimeout to
// finish, after which they are handed back to the queue for another worker.
func (w *Worker) Run(ctx context.Context) error {
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := jobs.EnsureStreams(setup, w.js, jobs.StreamOptions{EventsMaxAge: w.cfg.EventsMaxAge, MaxQueued: w.cfg.MaxQueued, Replicas: w.cfg.Replicas}); err != nil {
		return err
	}
	var err error
	if w.events, err = w.js.Stream(setup, jobs.EventsStream); err != nil {
		return err
	}
	if w.cancels, err = w.js.Stream(setup, jobs.CancelStream); err != nil {
		return err
	}
	consumer, err := w.js.CreateOrUpdateConsumer(setup, jobs.QueueStream, jobs.ConsumerConfig(w.cfg.Pool, w.cfg.AckWait, w.cfg.Replicas))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", jobs.ConsumerName(w.cfg.Pool), err)
	}
	running, err := w.nc.Subscribe(jobs.CancelPrefix+"*", w.onCancel)
	if err != nil {
		return fmt.Errorf("subscribe to cancels: %w", err)
	}
	queued, err := w.nc.QueueSubscribe(jobs.CancelPrefix+"*", cancelQueue, w.onQueuedCancel)
	if err != nil {
		running.Unsubscribe()
		return fmt.Errorf("subscribe to cancels: %w", err)
	}
	defer func() {
		running.Unsubscribe()
		queued.Unsubscribe()
		w.stopAnswering()
	}()

	info := w.engine.Info()
	svc, err := w.announce(consumer)
	if err != nil {
		return err
	}
	defer svc.Stop()
	w.cfg.Metrics.setSlots(w.cfg.Slots)
	w.cfg.Metrics.watchQueue(func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return float64(waitingJobs(ctx, consumer))
	})
	w.narrator.Tell(narration.Subscribe(jobs.ExecuteSubjectFor(w.cfg.Pool), jobs.ConsumerName(w.cfg.Pool)), w.lifecycle)
	w.narrator.Tell(narration.Ready(w.cfg.WorkerID, info.Name, w.cfg.Pool, w.cfg.Slots), w.lifecycle)

	// Jobs outlive ctx: they get their own context, ended by drain.
	jobsCtx, stopJobs := context.WithCancelCause(context.Background())
	defer stopJobs(errShutdown)
	w.take(ctx, jobsCtx, consumer)
	// A draining worker takes no jobs: it is no longer found, once the
	// server has seen the service's subscriptions go (the flush).
	svc.Stop()
	w.nc.Flush()
	w.drain(stopJobs)
	return nil
}

// take pulls jobs while there are free slots, until ctx ends.
func (w *Worker) take(ctx, jobsCtx context.Context, consumer jetstream.Consumer) {
	slots := make(chan struct{}, w.cfg.Slots)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
		for free < w.cfg.Slots {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := consumer.Fetch(free, jetstream.FetchContext(fetchCtx))
		if err == nil {
			for msg := range batch.Messages() {
				free--
				w.jobs.Add(1)
				go func() {
					defer func() { <-slots; w.jobs.Done() }()
					defer w.cfg.Metrics.started()()
					w.handle(jobsCtx, msg)
				}()
			}
			err = batch.Error()
		}
		cancel()
		for ; free > 0; free-- {
			<-slots
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			w.log.Warn().Err(err).Msg("fetching jobs failed; retrying")
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
}

// drain waits for running jobs, then hands back those still running.
func (w *Worker) drain(stopJobs context.CancelCauseFunc) {
	w.mu.Lock()
	n := len(w.running)
	w.mu.Unlock()
	w.narrator.Tell(narration.Shutdown(w.cfg.WorkerID, fmt.Sprintf("no more jobs taken; waiting up to %s for %d running", w.cfg.DrainTimeout, n)), w.lifecycle)
	done := make(chan struct{})
	go func() { w.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.DrainTimeout):
		w.mu.Lock()
		n = len(w.running)
		w.mu.Unlock()
		w.narrator.Tell(narration.Shutdown(w.cfg.WorkerID, fmt.Sprintf("handing %d unfinished jobs back to the queue", n)), w.lifecycle)
		stopJobs(errShutdown)
		<-done
	}
	w.narrator.Tell(narration.Shutdown(w.cfg.WorkerID, "drained, all jobs finished or handed back"), w.lifecycle)
}

// register notes a running job so a cancel can reach it; false if the job
// already runs here.
func (w *Worker) register(jobID string, cancel context.CancelCauseFunc) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.running[jobID]; dup {
		return false
	}
	w.running[jobID] = cancel
	return true
}

func (w *Worker) unregister(jobID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, jobID)
}
