package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/tracing"
)

// submission is the body of POST /v1/jobs: an execute request plus the
// fields only the bridge reads, which are taken off before publishing.
type submission struct {
	jobs.Request
	// Pool routes the job to jobs.execute.<pool>.
	Pool string `json:"pool,omitempty"`
	// CancelOnDisconnect, true unless given, cancels a job whose stream
	// the bridge started when its client goes away.
	CancelOnDisconnect *bool `json:"cancel_on_disconnect,omitempty"`
}

// queueFullRetry is the Retry-After of a job refused because its pool's
// queue is full: about the time a few jobs take to run.
const queueFullRetry = 5 * time.Second

// accepted is the answer to a job submitted without a stream.
type accepted struct {
	JobID     string `json:"job_id"`
	EventsURL string `json:"events_url"`
}

// submit validates a job with the workers' own rules, publishes it to the
// work queue with its job id as the message id, and answers 202, or the
// event stream itself when the client accepts text/event-stream.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, &jobs.Error{Code: jobs.InvalidRequest,
			Message: fmt.Sprintf("request body exceeds %d bytes", tooLarge.Limit)})
		return
	case timedOut(err):
		writeError(w, http.StatusRequestTimeout, &jobs.Error{Code: jobs.InvalidRequest,
			Message: fmt.Sprintf("the request body did not arrive within %s", s.cfg.ReadTimeout)})
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, &jobs.Error{Code: jobs.InvalidRequest, Message: "reading the body: " + err.Error()})
		return
	}
	sub, err := decodeSubmission(body, r.Header.Get(jobs.CorrelationHeader))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	data, err := json.Marshal(sub.Request)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	o := streamOptions{known: true, cancelOnGone: sub.CancelOnDisconnect == nil || *sub.CancelOnDisconnect, submitted: arrival(r.Context())}
	if acceptsEventStream(r) {
		// Watch the job, and read what its subject holds, while the job
		// is published: no event can come before the job is queued.
		var ok bool
		if o.live, ok = s.watchLive(r.Context(), w, sub.JobID); !ok {
			return
		}
		defer s.hub.unwatch(sub.JobID, o.live)
		last := make(chan lastRead, 1)
		go func() {
			msg, err := s.lastEvent(r.Context(), sub.JobID)
			last <- lastRead{msg, err}
		}()
		o.last = last
	}
	ack, err := s.publishJob(r.Context(), jobs.ExecuteSubjectFor(sub.Pool), sub.JobID, data)
	if jobs.IsQueueFull(err) {
		w.Header().Set("Retry-After", strconv.Itoa(int(queueFullRetry.Seconds())))
		writeError(w, http.StatusTooManyRequests, &jobs.Error{Code: jobs.QueueFull,
			Message: "the pool's queue is full (the workers' -max-queued); try again later"})
		return
	}
	if err != nil {
		s.log.Error().Err(err).Str("job_id", sub.JobID).Msg("publish job")
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: "the job could not be queued: " + err.Error()})
		return
	}
	if ack.Duplicate {
		writeError(w, http.StatusConflict, &jobs.Error{Code: jobs.Conflict, Field: "job_id", Message: "a job with this id was already submitted"})
		return
	}
	s.log.Info().Str("job_id", sub.JobID).Str("correlation_id", sub.CorrelationID).Str("pool", sub.Pool).
		Func(func(e *zerolog.Event) {
			if id := tracing.TraceID(r.Context()); id != "" {
				e.Str("trace_id", id)
			}
		}).Msg("job queued")

	eventsURL := "/v1/jobs/" + sub.JobID + "/events"
	w.Header().Set("Location", eventsURL)
	w.Header().Set("X-Job-Id", sub.JobID)
	if !acceptsEventStream(r) {
		writeJSON(w, http.StatusAccepted, accepted{JobID: sub.JobID, EventsURL: eventsURL})
		return
	}
	s.serveEvents(w, r, sub.JobID, o)
}

// decodeSubmission decodes and validates a body, and gives the job an id
// and the correlation id of the HTTP header when it has none.
func decodeSubmission(body []byte, correlationID string) (submission, error) {
	var sub submission
	if err := jobs.DecodeStrict(body, &sub); err != nil {
		return sub, err
	}
	if sub.Pool != "" {
		if err := jobs.CheckSubjectToken("pool", sub.Pool); err != nil {
			return sub, err
		}
	}
	if sub.CorrelationID == "" {
		sub.CorrelationID = correlationID
	}
	if err := sub.ValidateOptions(); err != nil {
		return sub, err
	}
	if sub.JobID == "" {
		sub.JobID = uuid.NewString()
	}
	return sub, sub.Validate()
}

func acceptsEventStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
