package jobs

import (
	"context"
	"errors"
	"fmt"
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

// StreamConfigs are the streams a worker creates or updates at start-up.
func StreamConfigs(eventsMaxAge time.Duration) []jetstream.StreamConfig {
	if eventsMaxAge <= 0 {
		eventsMaxAge = DefaultEventsMaxAge
	}
	return []jetstream.StreamConfig{{
		Name:        QueueStream,
		Description: "execute jobs waiting for a worker",
		Subjects:    []string{ExecuteSubject, ExecuteSubject + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      QueueMaxAge,
		Duplicates:  2 * time.Minute,
	}, {
		Name:        EventsStream,
		Description: "every event of every job, for replay",
		Subjects:    []string{EventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      eventsMaxAge,
		MaxBytes:    EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
	}, {
		Name:              CancelStream,
		Description:       "the last cancel of each job",
		Subjects:          []string{CancelPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		MaxAge:            max(eventsMaxAge, QueueMaxAge), // a cancel outlives the job it waits for
		MaxMsgsPerSubject: 1,
	}}
}

// EnsureStreams creates the streams, or updates them to this
// configuration; calling it again, from any number of workers, is harmless.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, eventsMaxAge time.Duration) error {
	for _, cfg := range StreamConfigs(eventsMaxAge) {
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
// ackWait of 0 is AckWait.
func ConsumerConfig(pool string, ackWait time.Duration) jetstream.ConsumerConfig {
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
