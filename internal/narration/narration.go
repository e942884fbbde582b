// Package narration tells what a worker does, to people, twice: one JSON
// line on stdout for operators, and the same event on a subject — the job's
// own for per-request events, worker.lifecycle for lifecycle ones. It knows
// how each event reads (a plain sentence and an emoji line) and where it
// goes; it knows nothing about llama.cpp.
package narration

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/jobs"
)

// Sink is a destination for narration besides stdout: a job's event
// stream, or the lifecycle subject.
type Sink interface {
	Narrate(n *jobs.Narration)
}

// Narrator writes narration to stdout through a zerolog logger and hands it
// to sinks. The logger carries worker_id; each line adds job_id and
// correlation_id where they apply.
type Narrator struct {
	log      zerolog.Logger
	workerID string
}

// New makes a Narrator for one worker.
func New(log zerolog.Logger, workerID string) *Narrator {
	return &Narrator{log: log, workerID: workerID}
}

// WithTraceID is a Narrator whose lines carry trace_id: one job's, so an
// operator can follow the job's trace into its stdout.
func (t *Narrator) WithTraceID(traceID string) *Narrator {
	if traceID == "" {
		return t
	}
	return &Narrator{log: t.log.With().Str("trace_id", traceID).Logger(), workerID: t.workerID}
}

// Tell stamps n with the worker and the time, writes it to stdout, then
// gives it to each sink in order.
func (t *Narrator) Tell(n jobs.Narration, sinks ...Sink) {
	n.Type = jobs.TypeNarration
	n.WorkerID = t.workerID
	if n.TS.IsZero() {
		n.TS = time.Now().UTC()
	}
	t.log.WithLevel(level(n.Action)).
		Str("actor", n.Actor).
		Str("action", n.Action).
		Str("target", n.Target).
		Func(func(e *zerolog.Event) {
			if n.JobID != "" {
				e.Str("job_id", n.JobID)
			}
			if n.CorrelationID != "" {
				e.Str("correlation_id", n.CorrelationID)
			}
			if n.TokensIn != nil {
				e.Int("tokens_in", *n.TokensIn)
			}
			if n.TokensOut != nil {
				e.Int("tokens_out", *n.TokensOut)
			}
			if n.DurationMS != nil {
				e.Int64("duration_ms", *n.DurationMS)
			}
			if n.ErrorKind != "" {
				e.Str("error_kind", n.ErrorKind)
			}
		}).
		Str("human", n.Human).
		Msg(n.Cute)
	for _, s := range sinks {
		s.Narrate(&n)
	}
}

func level(action string) zerolog.Level {
	switch action {
	case ActionValidationFailed:
		return zerolog.WarnLevel
	case ActionInferenceFailed, ActionNATSConnectFailed: // the worker exits after the latter
		return zerolog.ErrorLevel
	}
	return zerolog.InfoLevel
}
