package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The nats-server and nats.go keep process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).asyncCallbacksHandler"),
	)
}

// env is one test's NATS server, connection and JetStream.
type env struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func setup(t *testing.T) env {
	t.Helper()
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	return env{url: url, nc: nc, js: testutil.JetStream(t, nc)}
}

func ptr[T any](v T) *T { return &v }

func greedyJob(id, prompt string, maxTokens int) jobs.Request {
	return jobs.Request{JobID: id, Prompt: prompt, MaxTokens: ptr(maxTokens), Temperature: ptr(0.0), Seed: ptr(uint32(1))}
}

// summary is what a test checks of a job's events.
type summary struct {
	events  []jobs.Event
	text    string
	tokens  int
	actions []string
	last    jobs.Event
}

func summarize(t *testing.T, events []jobs.Event) summary {
	t.Helper()
	s := summary{events: events, last: events[len(events)-1]}
	for i, ev := range events {
		h := ev.Head()
		if h.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: %+v", i, h.Seq, ev)
		}
		if h.TS.IsZero() || h.JobID == "" {
			t.Fatalf("event %d lacks ts or job_id: %+v", i, ev)
		}
		if h.Type.Terminal() && i != len(events)-1 {
			t.Fatalf("terminal event %d is not last", i)
		}
		switch ev := ev.(type) {
		case *jobs.Started:
			s.text, s.tokens = "", 0 // a restarted job starts over
		case *jobs.Token:
			if ev.I != s.tokens {
				t.Fatalf("token index %d, want %d", ev.I, s.tokens)
			}
			if !utf8.ValidString(ev.T) || ev.T == "" {
				t.Fatalf("token %d is not whole UTF-8: %q", ev.I, ev.T)
			}
			s.text += ev.T
			s.tokens++
		case *jobs.Narration:
			s.actions = append(s.actions, ev.Action)
			if ev.WorkerID == "" || ev.CorrelationID == "" || ev.Cute == "" || ev.Human == "" {
				t.Fatalf("narration lacks a field: %+v", ev)
			}
		}
	}
	return s
}

// starts lists the job's started events: more than one when it ran again.
func (s summary) starts() []*jobs.Started {
	var out []*jobs.Started
	for _, ev := range s.events {
		if st, ok := ev.(*jobs.Started); ok {
			out = append(out, st)
		}
	}
	return out
}

// awaitToken subscribes to a job's events now; the returned func waits for
// its first token.
func awaitToken(t *testing.T, nc *nats.Conn, jobID string) func() {
	t.Helper()
	sub, err := nc.SubscribeSync(jobs.EventsSubject(jobID))
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		defer sub.Unsubscribe()
		for {
			msg, err := sub.NextMsg(30 * time.Second)
			if err != nil {
				t.Fatalf("job %s: no token: %v", jobID, err)
			}
			if bytes.Contains(msg.Data, []byte(`"type":"token"`)) {
				return
			}
		}
	}
}

func (s summary) end(t *testing.T) *jobs.End {
	t.Helper()
	end, ok := s.last.(*jobs.End)
	if !ok {
		t.Fatalf("last event is %+v, want end", s.last)
	}
	if end.TokensOut != s.tokens {
		t.Fatalf("end says %d tokens, %d token events came", end.TokensOut, s.tokens)
	}
	return end
}

func TestJobEventSequence(t *testing.T) {
	e := setup(t)
	w := testutil.StartWorker(t, e.url)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("story-1", "Once upon a time", 25))
	s := summarize(t, testutil.Events(t, e.js, "story-1", 30*time.Second))

	started, ok := s.events[0].(*jobs.Started)
	if !ok || started.Model != "stories260K" || started.WorkerID != w.ID || started.Attempt != 1 || started.Seed != 1 {
		t.Fatalf("first event %+v, want started", s.events[0])
	}
	end := s.end(t)
	if end.StopReason != jobs.StopMaxTokens || end.TokensIn < 2 || end.StopSequenceMatched != nil || s.tokens != 25 {
		t.Errorf("end %+v after %d tokens", end, s.tokens)
	}
	if !strings.Contains(s.text, "Lily") {
		t.Errorf("greedy story has no Lily: %q", s.text)
	}
	want := []string{"request_validated", "inference_start", "tokenize", "token_progress", "token_progress", "inference_complete"}
	if strings.Join(s.actions, " ") != strings.Join(want, " ") {
		t.Errorf("narration actions %v, want %v", s.actions, want)
	}
	// Token progress comes after its tenth token, never before.
	for i, ev := range s.events {
		if n, ok := ev.(*jobs.Narration); ok && n.Action == "token_progress" {
			if tok, ok := s.events[i-1].(*jobs.Token); !ok || tok.I+1 != *n.TokensOut {
				t.Errorf("token_progress %d follows %+v", *n.TokensOut, s.events[i-1])
			}
		}
	}
	// Every per-request event is told on stdout too, with the job's ids.
	for _, action := range want {
		line := fmt.Sprintf(`"action":"%s"`, action)
		if !w.Stdout.WaitFor(line, 5*time.Second) {
			t.Errorf("stdout lacks %s", line)
		}
	}
	for _, line := range bytes.Split(w.Stdout.Bytes(), []byte("\n")) {
		if bytes.Contains(line, []byte(`"action":"tokenize"`)) &&
			(!bytes.Contains(line, []byte(`"job_id":"story-1"`)) || !bytes.Contains(line, []byte(`"correlation_id":"`))) {
			t.Errorf("stdout line lacks job_id or correlation_id: %s", line)
		}
	}
}

func TestCorrelationIDFromHeader(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	data, _ := json.Marshal(greedyJob("corr-1", "Once", 3))
	msg := nats.NewMsg(jobs.ExecuteSubject)
	msg.Data = data
	msg.Header.Set(jobs.CorrelationHeader, "trace-42")
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	for _, ev := range testutil.Events(t, e.js, "corr-1", 30*time.Second) {
		if n, ok := ev.(*jobs.Narration); ok && n.CorrelationID != "trace-42" {
			t.Fatalf("narration correlation_id %q, want trace-42", n.CorrelationID)
		}
	}
}

func TestConcurrentJobsInterleave(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	const n = 8 // twice the slots: four wait for a free one
	for i := range n {
		testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob(fmt.Sprintf("many-%d", i), "Once upon a time", 60))
	}
	type span struct{ first, last time.Time }
	spans := make([]span, n)
	for i := range n {
		s := summarize(t, testutil.Events(t, e.js, fmt.Sprintf("many-%d", i), 60*time.Second))
		if end := s.end(t); end.StopReason != jobs.StopMaxTokens || s.tokens != 60 {
			t.Fatalf("job %d: %+v", i, end)
		}
		spans[i] = span{s.events[0].Head().TS, s.last.Head().TS}
	}
	// The first four ran together: each started before the others ended.
	for i := range 4 {
		for j := range 4 {
			if i != j && !spans[i].first.Before(spans[j].last) {
				t.Errorf("job %d started after job %d ended: not interleaved", i, j)
			}
		}
	}
}

func TestStopSequence(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("full", "Once upon a time", 40))
	full := summarize(t, testutil.Events(t, e.js, "full", 30*time.Second)).text
	cut := strings.Index(full, "Lily")
	if cut < 0 {
		t.Fatalf("no Lily in %q", full)
	}
	req := greedyJob("stopped", "Once upon a time", 40)
	req.Stop = []string{"Lily", "zzz"}
	testutil.Submit(t, e.js, jobs.ExecuteSubject, req)
	s := summarize(t, testutil.Events(t, e.js, "stopped", 30*time.Second))
	end := s.end(t)
	if end.StopReason != jobs.StopSequence || end.StopSequenceMatched == nil || *end.StopSequenceMatched != "Lily" {
		t.Errorf("end %+v", end)
	}
	if s.text != full[:cut] {
		t.Errorf("text %q, want %q", s.text, full[:cut])
	}
}

func TestTimeout(t *testing.T) {
	e := setup(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ContextSize: 2048})
	req := greedyJob("slow", "Once upon a time", 2000)
	req.TimeoutMS = ptr(30)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, req)
	s := summarize(t, testutil.Events(t, e.js, "slow", 30*time.Second))
	if end := s.end(t); end.StopReason != jobs.StopTimeout || end.TokensOut >= 2000 {
		t.Errorf("end %+v", end)
	}
	if s.actions[len(s.actions)-1] != narration.ActionInferenceComplete {
		t.Errorf("actions %v", s.actions)
	}
}

func TestCancelWhileRunning(t *testing.T) {
	e := setup(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ContextSize: 2048})
	firstToken := awaitToken(t, e.nc, "long")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("long", "Once upon a time", 2000))
	firstToken() // cancel at the first token
	if _, err := e.js.Publish(context.Background(), jobs.CancelSubject("long"), nil); err != nil {
		t.Fatal(err)
	}
	s := summarize(t, testutil.Events(t, e.js, "long", 30*time.Second))
	if end := s.end(t); end.StopReason != jobs.StopCancelled || end.TokensOut >= 2000 {
		t.Errorf("end %+v", end)
	}
}

// A cancel sent while no worker runs waits in the cancel stream; the worker
// that takes the job later ends it at once, before any token.
func TestCancelWhileQueuedWithNoWorker(t *testing.T) {
	e := setup(t)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("queued", "Once", 50))
	if _, err := e.js.Publish(context.Background(), jobs.CancelSubject("queued"), nil); err != nil {
		t.Fatal(err)
	}
	testutil.StartWorker(t, e.url)
	s := summarize(t, testutil.Events(t, e.js, "queued", 30*time.Second))
	if _, ok := s.events[0].(*jobs.Started); !ok || len(s.events) != 2 || s.end(t).StopReason != jobs.StopCancelled {
		t.Errorf("events %+v, want started and a CANCELLED end", s.events)
	}
}

// A cancel that cannot be answered, because the job's events cannot be
// read, is tried again and then told on stdout, not taken for a job that
// is over.
func TestQueuedCancelReadErrorIsTold(t *testing.T) {
	e := setup(t)
	w := testutil.StartWorker(t, e.url)
	if err := e.js.DeleteStream(context.Background(), jobs.EventsStream); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Publish(jobs.CancelSubject("unreadable"), nil); err != nil {
		t.Fatal(err)
	}
	if !w.Stdout.WaitFor("cancel of a queued job not answered", 30*time.Second) {
		t.Fatalf("stdout does not tell the unanswered cancel:\n%s", w.Stdout.Bytes())
	}
	if n := strings.Count(string(w.Stdout.Bytes()), "trying again"); n != 2 {
		t.Errorf("stdout tells %d retries, want 2:\n%s", n, w.Stdout.Bytes())
	}
}

// A job cancelled while it waits behind a busy worker ends at once, and is
// dropped when its turn comes.
func TestCancelWhileQueuedBehindBusyWorker(t *testing.T) {
	e := setup(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Parallel: 1, ContextSize: 2048})
	firstToken := awaitToken(t, e.nc, "busy")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("busy", "Once upon a time", 2000))
	firstToken()
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("waiting", "Once", 50))
	if _, err := e.js.Publish(context.Background(), jobs.CancelSubject("waiting"), nil); err != nil {
		t.Fatal(err)
	}
	s := summarize(t, testutil.Events(t, e.js, "waiting", 30*time.Second))
	if len(s.events) != 1 || s.end(t).StopReason != jobs.StopCancelled {
		t.Errorf("events %+v, want one CANCELLED end", s.events)
	}
	busy := summarize(t, testutil.Events(t, e.js, "busy", 60*time.Second))
	if busy.end(t).StopReason != jobs.StopMaxTokens {
		t.Errorf("busy job: %+v", busy.last)
	}
	// The cancelled job, taken after busy, was dropped: no event followed.
	waitQueueEmpty(t, e.js)
	if again := testutil.Events(t, e.js, "waiting", 5*time.Second); len(again) != 1 {
		t.Errorf("cancelled job got %d events", len(again))
	}
}

func waitQueueEmpty(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := js.Stream(context.Background(), jobs.QueueStream)
		if err != nil {
			t.Fatal(err)
		}
		if info.CachedInfo().State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs left in the queue", info.CachedInfo().State.Msgs)
		}
		time.Sleep(20 * time.Millisecond) // polling the server's state: nothing to wait on
	}
}

// A pool's workers take jobs from jobs.execute.<pool> only; the default
// pool's, from jobs.execute only.
func TestPools(t *testing.T) {
	e := setup(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "gpu-worker", Pool: "gpu"})
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "default-worker"})
	testutil.Submit(t, e.js, jobs.ExecuteSubjectFor("gpu"), greedyJob("for-gpu", "Once", 3))
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("for-anyone", "Once", 3))
	for id, worker := range map[string]string{"for-gpu": "gpu-worker", "for-anyone": "default-worker"} {
		events := testutil.Events(t, e.js, id, 30*time.Second)
		if st, ok := events[0].(*jobs.Started); !ok || st.WorkerID != worker {
			t.Errorf("%s: first event %+v, want started on %s", id, events[0], worker)
		}
	}
}

// A generation longer than the ack wait keeps its job: in-progress acks
// stop the queue from giving it to another worker. The engine is slow by
// construction, so the job outlives the ack wait on any machine.
func TestLongJobKeepsItsMessage(t *testing.T) {
	e := setup(t)
	const ackWait = 400 * time.Millisecond
	const pieces = 24 // three ack waits, one piece an eighth of one
	slow := slowEngine{Engine: loadEngine(t), every: ackWait / 8}
	for _, id := range []string{"one", "two"} {
		testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: id, Engine: slow, AckWait: ackWait})
	}
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("long-one", "Once upon a time", pieces))
	s := summarize(t, testutil.Events(t, e.js, "long-one", 60*time.Second))
	end := s.end(t)
	if starts := len(s.starts()); starts != 1 || end.TokensOut != pieces {
		t.Errorf("%d started events, %d tokens: the job was given away", starts, end.TokensOut)
	}
	waitQueueEmpty(t, e.js)
}

// slowEngine generates one piece per tick, up to MaxTokens: a generation
// as long as a test needs, whatever the machine's speed.
type slowEngine struct {
	worker.Engine
	every time.Duration
}

func (s slowEngine) Generate(ctx context.Context, req engine.Request, hooks engine.Hooks) (engine.Result, error) {
	res := engine.Result{PromptTokens: req.Prompt.Len(), Reason: engine.StopMaxTokens}
	start := time.Now()
	if hooks.Slot != nil {
		hooks.Slot(0, 0, 0)
	}
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for ; res.Pieces < req.MaxTokens; res.Pieces++ {
		select {
		case <-ctx.Done():
			res.Reason = engine.StopCancelled
			res.Tokens, res.Time = res.Pieces, time.Since(start)
			return res, nil
		case <-tick.C:
		}
		hooks.Piece("x", res.Pieces)
	}
	res.Tokens, res.Time = res.Pieces, time.Since(start)
	return res, nil
}
