package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// Status is where a job stands, as GET /v1/jobs/{job_id} tells it.
type Status string

// The statuses of a job.
const (
	// StatusQueued: no event yet, and the job is waiting in the work queue.
	StatusQueued Status = "queued"
	// StatusRunning: the last event is started, token or narration.
	StatusRunning Status = "running"
	// StatusDone: the last event is an end that was not a cancel.
	StatusDone Status = "done"
	// StatusCancelled: the last event is an end with stop_reason CANCELLED.
	StatusCancelled Status = "cancelled"
	// StatusFailed: the last event is an error.
	StatusFailed Status = "failed"
)

// maxQueueScan bounds how many queued jobs a lookup reads (one NATS round
// trip each) before it gives up on finding a job in the work queue, so
// that a lookup of an unknown id, which anyone may send, costs little. A
// job further back than this reads as unknown until the queue moves.
const maxQueueScan = 64

// JobStatus is the body of GET /v1/jobs/{job_id}.
type JobStatus struct {
	JobID     string          `json:"job_id"`
	Status    Status          `json:"status"`
	EventsURL string          `json:"events_url"`
	LastSeq   uint64          `json:"last_seq,omitempty"`
	LastEvent json.RawMessage `json:"last_event,omitempty"`
}

// status serves GET /v1/jobs/{job_id}, read from the job's last event, or
// from the work queue when it has none.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	if st, ok := s.lookup(w, r, id); ok {
		writeJSON(w, http.StatusOK, st)
	}
}

// lookup reads a job's status, or answers 404 for an unknown job and 503
// when NATS cannot tell.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, id string) (JobStatus, bool) {
	st, err := s.jobStatus(r.Context(), id)
	switch {
	case errors.Is(err, errUnknownJob):
		notFound(w)
		return st, false
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: err.Error()})
		return st, false
	}
	return st, true
}

// cancel serves DELETE /v1/jobs/{job_id}: it stores a cancel on
// jobs.cancel.<job_id>, which a worker honours whether the job is running
// or still queued; the job's stream then ends with stop_reason CANCELLED.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	st, ok := s.lookup(w, r, id)
	switch {
	case !ok:
		return
	case st.Status != StatusQueued && st.Status != StatusRunning:
		writeError(w, http.StatusConflict, &jobs.Error{Code: jobs.Conflict, Field: "job_id", Message: fmt.Sprintf("the job is already %s", st.Status)})
		return
	}
	if err := s.publishCancel(r.Context(), id); err != nil {
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: "the cancel could not be stored: " + err.Error()})
		return
	}
	s.log.Info().Str("job_id", id).Msg("job cancel requested")
	writeJSON(w, http.StatusAccepted, st)
}

// publishCancel stores a cancel in JOB_CANCELS, so that a worker that
// takes the job later still sees it.
func (s *Server) publishCancel(ctx context.Context, id string) error {
	data, _ := json.Marshal(map[string]string{"job_id": id})
	_, err := s.js.Publish(ctx, jobs.CancelSubject(id), data)
	return err
}

var errUnknownJob = errors.New("unknown job")

func (s *Server) jobStatus(ctx context.Context, id string) (JobStatus, error) {
	st := JobStatus{JobID: id, EventsURL: "/v1/jobs/" + id + "/events"}
	last, err := s.lastEvent(ctx, id)
	if err != nil {
		return st, err
	}
	if last == nil {
		queued, err := s.queued(ctx, id)
		if err != nil {
			return st, err
		}
		if !queued {
			return st, errUnknownJob
		}
		st.Status = StatusQueued
		return st, nil
	}
	var ev struct {
		jobs.Header
		StopReason jobs.StopReason `json:"stop_reason"`
	}
	if err := json.Unmarshal(last.Data, &ev); err != nil {
		return st, fmt.Errorf("the last event of job %s: %w", id, err)
	}
	st.LastSeq, st.LastEvent = ev.Seq, last.Data
	switch {
	case ev.Type == jobs.TypeError:
		st.Status = StatusFailed
	case ev.Type == jobs.TypeEnd && ev.StopReason == jobs.StopCancelled:
		st.Status = StatusCancelled
	case ev.Type == jobs.TypeEnd:
		st.Status = StatusDone
	default:
		st.Status = StatusRunning
	}
	return st, nil
}

// lastEvent is the job's last stored event, nil when it has none.
func (s *Server) lastEvent(ctx context.Context, id string) (*jetstream.RawStreamMsg, error) {
	st, err := s.stream(ctx, jobs.EventsStream)
	if err != nil {
		return nil, err
	}
	return jobs.LastEvent(ctx, st, id)
}

// queued reports whether the job waits in the work queue (or is being
// started by a worker that has not acknowledged it yet).
func (s *Server) queued(ctx context.Context, id string) (bool, error) {
	msg, _, err := s.findQueued(ctx, id)
	return msg != nil, err
}

// queuePosition is the job's place in its pool's queue, 1 for the next job
// a worker takes, or 0 when the job is not queued. Jobs still in the queue
// ahead of it but already taken by a worker (running) do not count.
func (s *Server) queuePosition(ctx context.Context, id string) (int, error) {
	msg, ahead, err := s.findQueued(ctx, id)
	if msg == nil || err != nil {
		return 0, err
	}
	pool := strings.TrimPrefix(strings.TrimPrefix(msg.Subject, jobs.ExecuteSubject), ".")
	running := 0
	if c, err := s.js.Consumer(ctx, jobs.QueueStream, jobs.ConsumerName(pool)); err == nil {
		running = c.CachedInfo().NumAckPending
	}
	return max(ahead-running, 0) + 1, nil
}

// findQueued finds the job in the work queue, and counts the messages of
// its pool ahead of it. The bridge keeps no state: it reads the queue,
// which holds few jobs when workers keep up, and finds the job by the
// message id it was published with.
func (s *Server) findQueued(ctx context.Context, id string) (*jetstream.RawStreamMsg, int, error) {
	st, err := s.stream(ctx, jobs.QueueStream)
	if err != nil {
		return nil, 0, err
	}
	ahead := map[string]int{}
	seq := uint64(1)
	for range maxQueueScan {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading the work queue: %w", err)
		}
		if msg.Header.Get(jetstream.MsgIDHeader) == id {
			return msg, ahead[msg.Subject], nil
		}
		ahead[msg.Subject]++
		seq = msg.Sequence + 1
	}
	return nil, 0, nil
}
