package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// onCancel handles jobs.cancel.<job_id>. A job running here stops within
// one decode step. Any other job that has no events yet is still queued (or
// unknown): every worker tries to end it with a CANCELLED end event, and the
// stream's expected-sequence check lets exactly one succeed; the worker
// that later takes the job finds it ended and drops it.
func (w *Worker) onCancel(msg *nats.Msg) {
	jobID := jobs.JobIDFromSubject(msg.Subject)
	if !jobs.ValidJobID(jobID) {
		return
	}
	w.mu.Lock()
	cancel, here := w.running[jobID]
	w.mu.Unlock()
	if here {
		w.log.Info().Str("job_id", jobID).Msg("cancel requested")
		cancel(errCancelled)
		return
	}
	w.answers.Add(1)
	go func() {
		defer w.answers.Done()
		w.cancelQueued(jobID)
	}()
}

func (w *Worker) cancelQueued(jobID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := lastEvent(ctx, w.events, jobID)
	if err != nil || h.seq > 0 {
		return // running elsewhere, or over
	}
	pub := newPublisher(w.js, jobID, h)
	end := &jobs.End{Header: jobs.Header{Type: jobs.TypeEnd}, StopReason: jobs.StopCancelled}
	switch err := pub.publish(ctx, end); {
	case err == nil:
		w.log.Info().Str("job_id", jobID).Msg("cancelled a job before it started")
	case !errors.Is(err, errRaced):
		w.log.Warn().Err(err).Str("job_id", jobID).Msg("could not end a cancelled queued job")
	}
}

// cancelWaiting reports whether a cancel for the job is kept in the cancel
// stream: one sent while no worker was there to hear it.
func (w *Worker) cancelWaiting(ctx context.Context, jobID string) bool {
	_, err := w.cancels.GetLastMsgForSubject(ctx, jobs.CancelSubject(jobID))
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		w.log.Warn().Err(err).Str("job_id", jobID).Msg("cannot read the cancel stream; running the job")
	}
	return err == nil
}
