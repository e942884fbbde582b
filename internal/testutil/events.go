package testutil

import (
	"context"
	"encoding/json"
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
	if err := jobs.EnsureStreams(ctx, js, 0); err != nil {
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
