package worker

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/narrated/llmworker/internal/discovery"
)

// announce registers the worker as an instance of the llmworker service,
// with a status endpoint that reads the pool's queue from consumer.
func (w *Worker) announce(consumer jetstream.Consumer) (micro.Service, error) {
	info := w.engine.Info()
	return discovery.Register(w.nc, discovery.Instance{
		WorkerID: w.cfg.WorkerID, Model: info.Name, Pool: w.cfg.Pool,
		Slots: w.cfg.Slots, ContextSize: info.ContextSize, Version: w.cfg.Version,
	}, func(ctx context.Context) discovery.Status {
		return w.status(ctx, consumer)
	})
}

// status is the worker's answer on discovery.StatusSubject.
func (w *Worker) status(ctx context.Context, consumer jetstream.Consumer) discovery.Status {
	w.mu.Lock()
	running := make([]string, 0, len(w.running))
	for id := range w.running {
		running = append(running, id)
	}
	w.mu.Unlock()
	slices.Sort(running)
	return discovery.Status{
		WorkerID: w.cfg.WorkerID, Model: w.engine.Info().Name, Pool: w.cfg.Pool,
		Slots: w.cfg.Slots, Busy: len(running), JobsRunning: running, Queued: waitingJobs(ctx, consumer),
	}
}

// waitingJobs counts the jobs waiting in the pool's queue, -1 when it cannot be
// read.
func waitingJobs(ctx context.Context, consumer jetstream.Consumer) int {
	ci, err := consumer.Info(ctx)
	if err != nil {
		return -1
	}
	return int(ci.NumPending)
}
