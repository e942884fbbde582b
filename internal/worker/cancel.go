package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
)

// cancelQueue is the queue group in which one worker of all answers each
// cancel of a job that is not running.
const cancelQueue = "cancel-queued"

// onCancel handles jobs.cancel.<job_id> on every worker: a job running here
// stops within one decode step.
func (w *Worker) onCancel(msg *nats.Msg) {
	jobID := jobs.JobIDFromSubject(msg.Subject)
	w.mu.Lock()
	cancel, here := w.running[jobID]
	w.mu.Unlock()
	if here {
		cancel(errCancelled)
	}
}

// onQueuedCancel handles jobs.cancel.<job_id> on one worker of all (a
// queue group): a job with no events yet is still queued, or unknown, and
// is ended at once with a CANCELLED end event. The stream's
// expected-sequence check keeps that from racing a worker that is starting
// the job: one of the two writes first, and the worker that takes the job
// later finds it ended and drops it.
func (w *Worker) onQueuedCancel(msg *nats.Msg) {
	jobID := jobs.JobIDFromSubject(msg.Subject)
	if !jobs.ValidSubjectToken(jobID) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.answering {
		// Shutting down: the cancel stays stored, and the worker that
		// takes the job finds it there.
		w.log.Debug().Str("job_id", jobID).Msg("shutting down; leaving a queued job's cancel to the worker that takes the job")
		return
	}
	w.answers.Add(1)
	go func() {
		defer w.answers.Done()
		w.cancelQueued(jobID)
	}()
}

// stopAnswering refuses new answers to queued cancels and waits for those
// under way.
func (w *Worker) stopAnswering() {
	w.mu.Lock()
	w.answering = false
	w.mu.Unlock()
	w.answers.Wait()
}

// cancelReadTries bounds the reads of a job's events that answering its
// cancel may take.
const cancelReadTries = 3

func (w *Worker) cancelQueued(jobID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := w.readForCancel(ctx, jobID)
	if err != nil {
		w.log.Error().Err(err).Str("job_id", jobID).
			Msg("cancel of a queued job not answered: its events cannot be read; the cancel stays stored for the worker that takes the job")
		return
	}
	if h.seq > 0 {
		return // running elsewhere, or over
	}
	pub := newPublisher(w.js, w.events, jobID, h)
	switch err := pub.publish(ctx, end(engine.Result{}, jobs.StopCancelled)); {
	case err == nil:
		w.log.Info().Str("job_id", jobID).Msg("cancelled a job before it started")
	case !errors.Is(err, errRaced):
		w.log.Warn().Err(err).Str("job_id", jobID).Msg("could not end a cancelled queued job")
	}
}

// readForCancel reads what the events stream holds of a job, trying again
// after a failed read, and telling each failure.
func (w *Worker) readForCancel(ctx context.Context, jobID string) (history, error) {
	for try := 1; ; try++ {
		h, err := lastEvent(ctx, w.events, jobID)
		if err == nil || try == cancelReadTries {
			return h, err
		}
		w.log.Warn().Err(err).Str("job_id", jobID).Int("try", try).Msg("cannot read a cancelled job's events; trying again")
		select {
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		case <-ctx.Done():
			return h, err
		}
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
