package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// Every malformed job is answered, acked, and leaves the worker serving.
func TestBadInput(t *testing.T) {
	e := setup(t)
	w := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ContextSize: 64})
	long := strings.Repeat("the cat sat on the mat ", 30) // far over 64 tokens
	tests := []struct {
		id, body string
		code     jobs.Code
		field    string
	}{
		{"bad-json", `{"job_id":"bad-json","prompt":`, jobs.InvalidRequest, ""},
		{"bad-unknown", `{"job_id":"bad-unknown","prompt":"hi","max_token":5}`, jobs.InvalidRequest, "max_token"},
		{"bad-evil", `{"job_id":"bad-evil","prompt":"hi","evil":1}`, jobs.InvalidRequest, "evil"},
		{"bad-case", `{"job_id":"bad-case","Prompt":"hi"}`, jobs.InvalidRequest, "Prompt"},
		{"bad-empty", `{"job_id":"bad-empty","prompt":""}`, jobs.InvalidRequest, "prompt"},
		{"bad-missing-prompt", `{"job_id":"bad-missing-prompt"}`, jobs.InvalidRequest, "prompt"},
		{"bad-temp", `{"job_id":"bad-temp","prompt":"hi","temperature":2.5}`, jobs.InvalidRequest, "temperature"},
		{"bad-top-p", `{"job_id":"bad-top-p","prompt":"hi","top_p":-0.1}`, jobs.InvalidRequest, "top_p"},
		{"bad-min-p", `{"job_id":"bad-min-p","prompt":"hi","min_p":1.5}`, jobs.InvalidRequest, "min_p"},
		{"bad-penalty", `{"job_id":"bad-penalty","prompt":"hi","repetition_penalty":3}`, jobs.InvalidRequest, "repetition_penalty"},
		{"bad-top-k", `{"job_id":"bad-top-k","prompt":"hi","top_k":-1}`, jobs.InvalidRequest, "top_k"},
		{"bad-max", `{"job_id":"bad-max","prompt":"hi","max_tokens":0}`, jobs.InvalidRequest, "max_tokens"},
		{"bad-seed", `{"job_id":"bad-seed","prompt":"hi","seed":4294967296}`, jobs.InvalidRequest, "seed"},
		{"bad-seed-neg", `{"job_id":"bad-seed-neg","prompt":"hi","seed":-1}`, jobs.InvalidRequest, "seed"},
		{"bad-timeout", `{"job_id":"bad-timeout","prompt":"hi","timeout_ms":0}`, jobs.InvalidRequest, "timeout_ms"},
		{"bad-stop", `{"job_id":"bad-stop","prompt":"hi","stop":["a","b","c","d","e"]}`, jobs.InvalidRequest, "stop"},
		{"bad-stop-empty", `{"job_id":"bad-stop-empty","prompt":"hi","stop":[""]}`, jobs.InvalidRequest, "stop"},
		{"bad-type", `{"job_id":"bad-type","prompt":42}`, jobs.InvalidRequest, "prompt"},
		{"bad-ctx-max", `{"job_id":"bad-ctx-max","prompt":"hi","max_tokens":65}`, jobs.InvalidRequest, "max_tokens"},
		{"bad-ctx-prompt", fmt.Sprintf(`{"job_id":"bad-ctx-prompt","prompt":%q,"max_tokens":5}`, long), jobs.InvalidRequest, "prompt"},
		{"bad-ctx-sum", `{"job_id":"bad-ctx-sum","prompt":"Once upon a time","max_tokens":62}`, jobs.ContextOverflow, "max_tokens"},
	}
	for _, tt := range tests {
		testutil.Submit(t, e.js, jobs.ExecuteSubject, []byte(tt.body))
	}
	// Unusable job ids: told on stdout only.
	unusable := []string{`{"job_id":"a.b","prompt":"hi"}`, `{"job_id":"a*","prompt":"hi"}`, `{"job_id":"a b","prompt":"hi"}`,
		`{"job_id":">","prompt":"hi"}`, `{"job_id":"","prompt":"hi"}`, `{"prompt":"hi"}`, `{"JOB_ID":"bad-upper","prompt":"hi"}`, `not json at all`, `[1,2]`,
		fmt.Sprintf(`{"job_id":%q,"prompt":"hi"}`, strings.Repeat("x", 129))}
	for _, body := range unusable {
		testutil.Submit(t, e.js, jobs.ExecuteSubject, []byte(body))
	}

	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			events := testutil.Events(t, e.js, tt.id, 30*time.Second)
			s := summarize(t, events)
			if len(events) != 2 || len(s.actions) != 1 || s.actions[0] != "validation_failed" {
				t.Fatalf("events %+v, want validation_failed then error", events)
			}
			if n := events[0].(*jobs.Narration); n.ErrorKind != string(tt.code) {
				t.Errorf("error_kind %q, want %q", n.ErrorKind, tt.code)
			}
			ev, ok := events[1].(*jobs.ErrorEvent)
			if !ok || ev.Code != tt.code || ev.Field != tt.field || ev.Message == "" {
				t.Errorf("error event %+v, want code %s field %q", events[1], tt.code, tt.field)
			}
		})
	}
	// Nothing lost, nothing stuck: the queue is empty, the worker still serves.
	waitQueueEmpty(t, e.js)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("good-after-bad", "Once", 5))
	if end := summarize(t, testutil.Events(t, e.js, "good-after-bad", 30*time.Second)).end(t); end.StopReason != jobs.StopMaxTokens {
		t.Errorf("good job after bad ones: %+v", end)
	}
	if !strings.Contains(string(w.Stdout.Bytes()), `Request rejected: unknown field \"evil\"`) {
		t.Error(`stdout does not say: Request rejected: unknown field "evil"`)
	}
	failed := strings.Count(string(w.Stdout.Bytes()), `"action":"validation_failed"`)
	if failed != len(tests)+len(unusable) {
		t.Errorf("stdout has %d validation_failed lines, want %d", failed, len(tests)+len(unusable))
	}
	// The unusable ids reached no job subject: the events stream holds only
	// the subjects of the usable ones.
	info, err := e.js.Stream(context.Background(), jobs.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if subjects := info.CachedInfo().State.NumSubjects; subjects != uint64(len(tests)+1) {
		t.Errorf("events stream has %d subjects, want %d", subjects, len(tests)+1)
	}
}

// A duplicate of a finished job is dropped: its events are not reopened.
func TestDuplicateJobDropped(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	job := greedyJob("twice", "Once", 5)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, job)
	first := testutil.Events(t, e.js, "twice", 30*time.Second)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, job)
	waitQueueEmpty(t, e.js)
	// A bad copy must not write into the finished job either.
	testutil.Submit(t, e.js, jobs.ExecuteSubject, []byte(`{"job_id":"twice","prompt":""}`))
	waitQueueEmpty(t, e.js)
	if again := testutil.Events(t, e.js, "twice", 30*time.Second); len(again) != len(first) {
		t.Errorf("finished job went from %d to %d events", len(first), len(again))
	}
}
