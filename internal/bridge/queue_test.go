package bridge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// A pool that holds -max-queued jobs refuses the next at publish: the
// bridge answers 429 with Retry-After and QUEUE_FULL, a JetStream
// publisher gets an error IsQueueFull recognises, nothing is queued, and
// the waiting jobs' streams tell their place until they run, every one to a
// complete story.
func TestQueueFull(t *testing.T) {
	_, url := testutil.StartNATS(t)
	h := newHarness(t, url, bridge.Config{QueuedEvery: 50 * time.Millisecond})
	ctx := context.Background()
	if err := jobs.EnsureStreams(ctx, h.js, jobs.StreamOptions{MaxQueued: 2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"first", "second"} {
		if resp, body := h.do("POST", "/v1/jobs", `{"job_id":"`+id+`","prompt":"Once","max_tokens":5}`); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %s %s", id, resp.Status, body)
		}
	}
	resp, body := h.do("POST", "/v1/jobs", `{"job_id":"third","prompt":"Once","max_tokens":5}`)
	var e jobs.Error
	json.Unmarshal(body, &e)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || e.Code != jobs.QueueFull {
		t.Fatalf("third job: %s Retry-After %q %s", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	if _, err := h.js.Publish(ctx, jobs.ExecuteSubject, []byte(`{"job_id":"fourth","prompt":"Once"}`)); !jobs.IsQueueFull(err) {
		t.Fatalf("a JetStream publisher got %v, want the queue full", err)
	}
	if st, err := h.js.Stream(ctx, jobs.QueueStream); err != nil || st.CachedInfo().State.Msgs != 2 {
		t.Fatalf("JOBS holds %+v (%v), want the 2 accepted jobs", st.CachedInfo().State, err)
	}

	// The second job's stream says it is second in line, until a worker
	// starts it.
	_, stream := h.openStream(ctx, http.DefaultClient, "/v1/jobs/second/events")
	first, err := stream.next()
	if err != nil {
		t.Fatal(err)
	}
	var q bridge.Queued
	if err := json.Unmarshal(first.Data, &q); err != nil || first.Type != "queued" || first.ID != 0 || q.Position != 2 || q.JobID != "second" {
		t.Fatalf("first message %+v: %s", first, first.Data)
	}
	testutil.StartWorkerWith(t, url, testutil.WorkerOptions{MaxQueued: 2})
	rest := stream.events(t)
	if len(rest) == 0 || rest[len(rest)-1].Type != "end" {
		t.Fatalf("stream after the queue: %s", ids(rest))
	}
	for _, id := range []string{"first", "second"} {
		testutil.CheckStory(t, id, testutil.Stored(t, h.js, id))
	}
	if last, err := jobs.LastEvent(ctx, mustStream(t, h, jobs.EventsStream), "third"); err != nil || last != nil {
		t.Fatalf("the refused job has events: %v %v", last, err)
	}
	if resp, body := h.do("POST", "/v1/jobs", `{"job_id":"third","prompt":"Once","max_tokens":5}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("with room again: %s %s", resp.Status, body)
	}
}

func mustStream(t *testing.T, h *harness, name string) jetstream.Stream {
	t.Helper()
	st, err := h.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
