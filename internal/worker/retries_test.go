package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/testutil"
)

// A job whose workers keep dying ends, once its attempts are used up,
// with an error event RETRIES_EXHAUSTED, and leaves the queue.
func TestRetriesExhausted(t *testing.T) {
	e := setup(t)
	const ackWait = time.Second
	stuck := stuckEngine{loadEngine(t)}
	started := awaitStarted(t, e.nc, "cursed")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("cursed", "Once", 5))
	for _, id := range []string{"first", "second"} {
		w := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: id, Engine: stuck, AckWait: ackWait, MaxDeliver: 2, DrainTimeout: time.Millisecond})
		started()
		started = awaitStarted(t, e.nc, "cursed")
		w.Kill() // dies with the job
	}
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "third", AckWait: ackWait, MaxDeliver: 2})
	stored := testutil.Stored(t, e.js, "cursed")
	testutil.CheckStory(t, "cursed", stored)
	s := summarize(t, stored)
	if starts := s.starts(); len(starts) != 2 || starts[0].WorkerID != "first" || starts[1].WorkerID != "second" {
		t.Fatalf("started events %+v", starts)
	}
	ev, ok := s.last.(*jobs.ErrorEvent)
	if !ok || ev.Code != jobs.RetriesExhausted || !strings.Contains(ev.Message, "2 attempts") {
		t.Fatalf("last event %+v", s.last)
	}
	waitQueueEmpty(t, e.js)
}

// A hand-back on shutdown is no failed attempt: with one attempt allowed,
// a job handed back still runs again, and says why it moved.
func TestHandBackUsesNoAttempt(t *testing.T) {
	e := setup(t)
	started := awaitStarted(t, e.nc, "moved")
	first := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "first", Engine: stuckEngine{loadEngine(t)}, MaxDeliver: 1, DrainTimeout: time.Millisecond})
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("moved", "Once", 5))
	started()
	first.Stop(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "second", MaxDeliver: 1})
	stored := testutil.Stored(t, e.js, "moved")
	testutil.CheckStory(t, "moved", stored)
	s := summarize(t, stored)
	if starts := s.starts(); len(starts) != 2 || starts[1].WorkerID != "second" {
		t.Fatalf("started events %+v", starts)
	}
	if !strings.Contains(strings.Join(s.actions, " "), narration.ActionHandedBack) {
		t.Errorf("actions %v lack %s", s.actions, narration.ActionHandedBack)
	}
	if end := s.end(t); end.StopReason != jobs.StopMaxTokens {
		t.Fatalf("end %+v", end)
	}
	waitQueueEmpty(t, e.js)
}
