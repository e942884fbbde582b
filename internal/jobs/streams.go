package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream streams of the contract.
const (
	// QueueStream holds execute requests until a worker takes them: a work
	// queue, so each job goes to one worker and a dead worker's job is
	// delivered again.
	QueueStream = "JOBS"
	// EventsStream holds every job's events for EventsMaxAge, so a client
	// that comes late or reconnects can replay them.
	EventsStream = "JOB_EVENTS"
	// CancelStream keeps the last cancel of each job, so a job cancelled
	// while queued is dropped when a worker takes it.
	CancelStream = "JOB_CANCELS"

	// DefaultEventsMaxAge is how long a job's events can be replayed.
	DefaultEventsMaxAge = time.Hour
	// EventsMaxBytes bounds the events stream's store: past it the oldest
	// events go first, so a busy hour cannot fill the disk.
	EventsMaxBytes = 1 << 30
	// QueueMaxAge is how long a job may wait for a worker.
	QueueMaxAge = 24 * time.Hour
	// AckWait is how long a worker may stay silent about a job before it is
	// given to another; running jobs say "in progress" well within it.
	AckWait = 30 * time.Second
	// MaxDeliver bounds how often a job is tried, so a job that kills its
	// workers does not kill them all forever.
	MaxDeliver = 5
)

// StreamOptions are the settings of the streams that an operator chooses;
// zero fields take the defaults.
type StreamOptions struct {
	// EventsMaxAge is how long a job's events can be replayed
	// (DefaultEventsMaxAge when 0).
	EventsMaxAge time.Duration
	// MaxQueued bounds the jobs held for one pool, queued or running; a
	// job beyond it is refused at publish (see IsQueueFull). 0 is no bound.
	MaxQueued int
	// Replicas is how many servers of a cluster hold each stream and
	// consumer (1 when 0).
	Replicas int
}

// StreamConfigs are the streams a worker creates or updates at start-up.
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	eventsMaxAge := o.EventsMaxAge
	if eventsMaxAge <= 0 {
		eventsMaxAge = DefaultEventsMaxAge
	}
	replicas := max(o.Replicas, 1)
	queue := jetstream.StreamConfig{
		Name:        QueueStream,
		Description: "execute jobs waiting for a worker",
		Subjects:    []string{ExecuteSubject, ExecuteSubject + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      QueueMaxAge,
		Duplicates:  2 * time.Minute,
		Replicas:    replicas,
	}
	if o.MaxQueued > 0 {
		// A pool is a subject: the limit holds per pool, and a job beyond
		// it is refused rather than an older one dropped.
		queue.MaxMsgsPerSubject = int64(o.MaxQueued)
		queue.Discard = jetstream.DiscardNew
		queue.DiscardNewPerSubject = true
	}
	return []jetstream.StreamConfig{queue, {
		Name:        EventsStream,
		Description: "every event of every job, for replay",
		Subjects:    []string{EventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      eventsMaxAge,
		MaxBytes:    EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Replicas:    replicas,
	}, {
		Name:              CancelStream,
		Description:       "the last cancel of each job",
		Subjects:          []string{CancelPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		MaxAge:            max(eventsMaxAge, QueueMaxAge), // a cancel outlives the job it waits for
		MaxMsgsPerSubject: 1,
		Replicas:          replicas,
	}}
}

// EnsureStreams creates the streams, or updates them to this
// configuration; calling it again, from any number of workers, is harmless.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range StreamConfigs(o) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ConsumerName is the durable pull consumer that the workers of a pool
// share.
func ConsumerName(pool string) string {
	if pool == "" {
		return "workers"
	}
	return "workers-" + pool
}

// ConsumerConfig is the durable pull consumer of a pool's workers; an
// ackWait of 0 is AckWait, replicas of 0 is 1.
func ConsumerConfig(pool string, ackWait time.Duration, replicas int) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = AckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(pool),
		Description:   "workers of pool " + poolName(pool),
		FilterSubject: ExecuteSubjectFor(pool),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// Workers count a job's attempts themselves, so that a hand-back
		// on shutdown uses up none, and end the job when they run out.
		MaxDeliver:    -1,
		MaxAckPending: -1,
		Replicas:      max(replicas, 1),
	}
}

func poolName(pool string) string {
	if pool == "" {
		return "(default)"
	}
	return pool
}

// LastEvent reads the last event of a job from the events stream, or nil
// when the job has none.
func LastEvent(ctx context.Context, events jetstream.Stream, jobID string) (*jetstream.RawStreamMsg, error) {
	msg, err := events.GetLastMsgForSubject(ctx, EventsSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the last event of job %s: %w", jobID, err)
	}
	return msg, nil
}

// IsQueueFull reports whether a publish to an execute subject was refused
// because the pool already holds StreamOptions.MaxQueued jobs.
func IsQueueFull(err error) bool {
	var apiErr *jetstream.APIError
	// 10077 is JetStream's "store failed", here with the per-subject limit.
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 &&
		strings.Contains(apiErr.Description, "maximum messages per subject")
}
