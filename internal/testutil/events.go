package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// JetStream gives a JetStream context on nc, with the contract's streams in
// place.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := jobs.EnsureStreams(ctx, js, jobs.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return js
}

// Submit publishes an execute request (any JSON value, or raw bytes) to
// subject through JetStream.
func Submit(t testing.TB, js jetstream.JetStream, subject string, req any) {
	t.Helper()
	data, ok := req.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(context.Background(), subject, data); err != nil {
		t.Fatal(err)
	}
}

// Events replays a job's events from the events stream, from the first,
// until its terminal event or the timeout.
func Events(t testing.TB, js jetstream.JetStream, jobID string, timeout time.Duration) []jobs.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{jobs.EventsSubject(jobID)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []jobs.Event
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("job %s: %d events, no terminal one: %v", jobID, len(out), err)
		}
		ev, err := jobs.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
		if ev.Head().Type.Terminal() {
			return out
		}
	}
}

// Stored reads every event the events stream holds of a job, however many
// terminal events there are, once the job has ended.
func Stored(t testing.TB, js jetstream.JetStream, jobID string) []jobs.Event {
	t.Helper()
	Events(t, js, jobID, 2*time.Minute) // until it ends
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := ReadStored(ctx, js, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ReadStored reads every event the events stream holds of a job now,
// message by message from the stream leader.
func ReadStored(ctx context.Context, js jetstream.JetStream, jobID string) ([]jobs.Event, error) {
	st, err := js.Stream(ctx, jobs.EventsStream)
	if err != nil {
		return nil, err
	}
	var out []jobs.Event
	for seq := uint64(1); ; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(jobs.EventsSubject(jobID)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("job %s: reading stored events: %w", jobID, err)
		}
		ev, err := jobs.DecodeEvent(msg.Data)
		if err != nil {
			return out, err
		}
		out = append(out, ev)
		seq = msg.Sequence + 1
	}
}

// CheckStory fails the test unless a job's stored events tell one story:
// seq 1, 2, 3… with no gap and no repeat, started first, each started's
// attempt above the one before, one terminal event, at the end.
func CheckStory(t testing.TB, jobID string, events []jobs.Event) {
	t.Helper()
	attempt := 0
	for i, ev := range events {
		h := ev.Head()
		switch {
		case h.Seq != uint64(i+1):
			t.Fatalf("job %s: event %d has seq %d (%s)", jobID, i+1, h.Seq, h.Type)
		case h.Type.Terminal() && i != len(events)-1:
			t.Fatalf("job %s: %s at seq %d is not the last of %d events", jobID, h.Type, h.Seq, len(events))
		case i == 0 && h.Type != jobs.TypeStarted && !h.Type.Terminal():
			t.Fatalf("job %s: first event is %s", jobID, h.Type)
		}
		if st, ok := ev.(*jobs.Started); ok {
			if st.Attempt <= attempt {
				t.Fatalf("job %s: started at seq %d says attempt %d after attempt %d", jobID, h.Seq, st.Attempt, attempt)
			}
			attempt = st.Attempt
		}
	}
	if n := len(events); n == 0 || !events[n-1].Head().Type.Terminal() {
		t.Fatalf("job %s: %d events and no terminal one", jobID, len(events))
	}
}
