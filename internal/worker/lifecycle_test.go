package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// Lifecycle narration goes to stdout and worker.lifecycle, never to a job's
// subject; per-request narration goes to stdout and the job's subject,
// never to worker.lifecycle.
func TestNarrationDestinations(t *testing.T) {
	e := setup(t)
	life, err := e.nc.SubscribeSync(jobs.LifecycleSubject)
	if err != nil {
		t.Fatal(err)
	}
	all, err := e.nc.SubscribeSync(jobs.EventsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	w := testutil.StartWorker(t, e.url)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("told", "Once", 12))
	testutil.Events(t, e.js, "told", 30*time.Second)
	w.Stop(t)
	// Everything the worker sent is on the server now: a marker published
	// after it comes after it, so reading up to the marker reads it all.
	const marker = "end-of-test"
	if err := e.nc.Publish(jobs.LifecycleSubject, []byte(marker)); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Publish(jobs.EventsSubject(marker), []byte(marker)); err != nil {
		t.Fatal(err)
	}

	var lifeActions []string
	for {
		msg, err := life.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("worker.lifecycle: %v before the marker", err)
		}
		if string(msg.Data) == marker {
			break
		}
		var n jobs.Narration
		if err := json.Unmarshal(msg.Data, &n); err != nil {
			t.Fatal(err)
		}
		if n.Type != jobs.TypeNarration || n.JobID != "" || n.Seq != 0 || n.WorkerID != w.ID {
			t.Errorf("lifecycle event %s", msg.Data)
		}
		lifeActions = append(lifeActions, n.Action)
	}
	for _, want := range []string{"subscribe", "ready", "shutdown"} {
		if !slices.Contains(lifeActions, want) {
			t.Errorf("worker.lifecycle lacks %s: %v", want, lifeActions)
		}
	}
	for _, a := range lifeActions {
		if !slices.Contains(narration.Lifecycle, a) {
			t.Errorf("worker.lifecycle carried per-request action %s", a)
		}
	}
	for {
		msg, err := all.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("jobs.events.>: %v before the marker", err)
		}
		if msg.Subject == jobs.EventsSubject(marker) {
			break
		}
		ev, err := jobs.DecodeEvent(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := ev.(*jobs.Narration); ok && !slices.Contains(narration.PerRequest, n.Action) {
			t.Errorf("job subject carried lifecycle action %s", n.Action)
		}
	}
	stdout := w.Stdout.Bytes()
	for _, action := range []string{"subscribe", "ready", "shutdown", "request_validated", "inference_complete"} {
		if !bytes.Contains(stdout, []byte(`"action":"`+action+`"`)) {
			t.Errorf("stdout lacks %s", action)
		}
	}
}

// Shutdown lets a running job finish when it can within the drain timeout.
func TestShutdownFinishesRunningJob(t *testing.T) {
	e := setup(t)
	w := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ContextSize: 2048, DrainTimeout: time.Minute})
	firstToken := awaitToken(t, e.nc, "finishing")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("finishing", "Once upon a time", 1000))
	firstToken()
	w.Stop(t)
	s := summarize(t, testutil.Events(t, e.js, "finishing", 5*time.Second))
	if end := s.end(t); end.StopReason != jobs.StopMaxTokens || end.TokensOut != 1000 {
		t.Errorf("end %+v", end)
	}
	if !strings.Contains(string(w.Stdout.Bytes()), "drained") {
		t.Error("stdout does not say the worker drained")
	}
}

// Past the drain timeout a running job goes back to the queue, and another
// worker runs it again from the start (attempt 2).
func TestShutdownHandsBackRunningJob(t *testing.T) {
	e := setup(t)
	first := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "first", ContextSize: 2048, DrainTimeout: time.Millisecond})
	firstToken := awaitToken(t, e.nc, "handed")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("handed", "Once upon a time", 1500))
	firstToken()
	first.Stop(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "second", ContextSize: 2048})
	s := summarize(t, testutil.Events(t, e.js, "handed", 60*time.Second))
	starts := s.starts()
	if len(starts) != 2 || starts[0].WorkerID != "first" || starts[1].WorkerID != "second" || starts[1].Attempt != 2 {
		t.Fatalf("started events %+v", starts)
	}
	if end := s.end(t); end.StopReason != jobs.StopMaxTokens || end.TokensOut != 1500 {
		t.Errorf("end %+v", end)
	}
}

// faultyEngine fails every generation, as a broken model or device would.
type faultyEngine struct{ worker.Engine }

func (faultyEngine) Generate(context.Context, engine.Request, engine.Hooks) (engine.Result, error) {
	return engine.Result{}, errors.New("decode: llama_decode failed with code -3")
}

func TestInferenceFailure(t *testing.T) {
	e := setup(t)
	real, err := engine.Load(engine.Config{ModelPath: testutil.ModelPath(t), Parallel: 1, ContextSize: 128, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(real.Close)
	w := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Engine: faultyEngine{real}})
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("doomed", "Once", 5))
	events := testutil.Events(t, e.js, "doomed", 30*time.Second)
	s := summarize(t, events)
	ev, ok := s.last.(*jobs.ErrorEvent)
	if !ok || ev.Code != jobs.InferenceFailed || !strings.Contains(ev.Message, "code -3") {
		t.Fatalf("last event %+v", s.last)
	}
	if s.actions[len(s.actions)-1] != "inference_failed" {
		t.Errorf("actions %v", s.actions)
	}
	if !w.Stdout.WaitFor(`"level":"error"`, 5*time.Second) {
		t.Error("stdout lacks an error line")
	}
	waitQueueEmpty(t, e.js) // acked: a failed job is not retried forever
}

// A slot that held an earlier job is cleared before the next, but for the
// prompt tokens the two share: cache_reset tells both.
func TestCacheResetNarrated(t *testing.T) {
	e := setup(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Parallel: 1})
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("first", "Once upon a time", 5))
	first := summarize(t, testutil.Events(t, e.js, "first", 30*time.Second))
	if slices.Contains(first.actions, narration.ActionCacheReset) {
		t.Errorf("a fresh slot was reset: %v", first.actions)
	}
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("second", "Once upon a time, in a town", 5))
	second := summarize(t, testutil.Events(t, e.js, "second", 30*time.Second))
	want := []string{"request_validated", "inference_start", "tokenize", "cache_reset", "inference_complete"}
	if !slices.Equal(second.actions, want) {
		t.Fatalf("actions %v, want %v", second.actions, want)
	}
	for _, ev := range second.events {
		if n, ok := ev.(*jobs.Narration); ok && n.Action == narration.ActionCacheReset && (n.TokensIn == nil || *n.TokensIn == 0) {
			t.Errorf("cache_reset %+v does not tell the reused tokens", n)
		}
	}
}

// The job of a worker that dies mid-generation goes to another worker once
// the ack wait passes, and runs again from the start (attempt 2), its
// events going on where the dead worker's stopped.
func TestDeadWorkersJobIsRedelivered(t *testing.T) {
	e := setup(t)
	const ackWait = 2 * time.Second
	doomed := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "doomed", ContextSize: 2048, AckWait: ackWait})
	firstToken := awaitToken(t, e.nc, "orphan")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("orphan", "Once upon a time", 1500))
	firstToken()
	doomed.Kill()
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "heir", ContextSize: 2048, AckWait: ackWait})
	s := summarize(t, testutil.Events(t, e.js, "orphan", 60*time.Second)) // also checks seq runs on without a gap
	starts := s.starts()
	if len(starts) != 2 || starts[0].WorkerID != "doomed" || starts[1].WorkerID != "heir" || starts[1].Attempt != 2 {
		t.Fatalf("started events %+v", starts)
	}
	if end := s.end(t); end.StopReason != jobs.StopMaxTokens || end.TokensOut != 1500 {
		t.Errorf("end %+v", end)
	}
}
