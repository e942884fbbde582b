package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// The tests in this file run the real worker on the shared model.

// decodeAll decodes a stream's events, checking each event's SSE name and
// id against its JSON.
func decodeAll(t *testing.T, evs []sse) []jobs.Event {
	t.Helper()
	out := make([]jobs.Event, len(evs))
	for i, e := range evs {
		ev, err := jobs.DecodeEvent(e.Data)
		if err != nil {
			t.Fatalf("event %d: %v", e.ID, err)
		}
		if h := ev.Head(); string(h.Type) != e.Type || h.Seq != e.ID {
			t.Fatalf("SSE id %d event %s carries %s seq %d", e.ID, e.Type, h.Type, h.Seq)
		}
		out[i] = ev
	}
	return out
}

func TestWorkerJobThroughTheBridge(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)

	resp, r := h.postStream(context.Background(), http.DefaultClient,
		`{"job_id":"story","prompt":"Once upon a time","max_tokens":40,"seed":42}`)
	if resp.Header.Get("X-Job-Id") != "story" {
		t.Fatalf("X-Job-Id %q", resp.Header.Get("X-Job-Id"))
	}
	live := r.events(t)
	checkSequence(t, live, "story", 1)
	evs := decodeAll(t, live)

	if _, ok := evs[0].(*jobs.Started); !ok {
		t.Fatalf("first event %T; want started", evs[0])
	}
	end, ok := evs[len(evs)-1].(*jobs.End)
	if !ok {
		t.Fatalf("last event %T; want end", evs[len(evs)-1])
	}
	var text bytes.Buffer
	tokens, actions := 0, map[string]bool{}
	for _, ev := range evs {
		switch ev := ev.(type) {
		case *jobs.Token:
			if ev.I != tokens {
				t.Fatalf("token index %d; want %d", ev.I, tokens)
			}
			tokens++
			text.WriteString(ev.T)
		case *jobs.Narration:
			actions[ev.Action] = true
			if ev.Cute == "" {
				t.Fatalf("narration %s without its cute line", ev.Action)
			}
		}
	}
	if tokens == 0 || end.TokensOut != tokens || text.Len() == 0 {
		t.Fatalf("%d token events, end says %d, text %q", tokens, end.TokensOut, text.String())
	}
	for _, a := range []string{"request_validated", "inference_start", "tokenize", "inference_complete"} {
		if !actions[a] {
			t.Errorf("no %s narration among %v", a, actions)
		}
	}

	// A late joiner gets the very same events, replayed.
	_, late := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/story/events")
	replayed := late.events(t)
	if len(replayed) != len(live) {
		t.Fatalf("replay has %d events; the live stream had %d", len(replayed), len(live))
	}
	for i := range live {
		if !bytes.Equal(replayed[i].Data, live[i].Data) {
			t.Fatalf("replayed event %d differs:\n%s\n%s", i+1, replayed[i].Data, live[i].Data)
		}
	}
	if code, st := h.status("story"); code != http.StatusOK || st.Status != bridge.StatusDone {
		t.Fatalf("status %d %+v; want done", code, st)
	}
}

// lastEnd reads a stream to its end and returns its end event.
func lastEnd(t *testing.T, r *sseReader) (*jobs.End, []jobs.Event) {
	t.Helper()
	evs := decodeAll(t, r.events(t))
	if len(evs) == 0 {
		t.Fatal("empty stream")
	}
	end, ok := evs[len(evs)-1].(*jobs.End)
	if !ok {
		t.Fatalf("last event %T; want end", evs[len(evs)-1])
	}
	return end, evs
}

// untilToken reads a stream up to its first token.
func untilToken(t *testing.T, r *sseReader) {
	t.Helper()
	for {
		m, err := r.next()
		if err != nil {
			t.Fatalf("no token came: %v", err)
		}
		if m.Type == "token" {
			return
		}
	}
}

// raceable runs try up to three times: the small model writes about two
// thousand tokens a second, so a cancel may, rarely, come after the end.
func raceable(t *testing.T, try func(attempt int) (finishedFirst bool)) {
	t.Helper()
	for attempt := range 3 {
		if !try(attempt) {
			return
		}
		t.Logf("attempt %d: the job finished before its cancel; trying again", attempt)
	}
	t.Fatal("every job finished before its cancel")
}

func TestDeleteCancelsARunningJob(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	raceable(t, func(attempt int) bool {
		id := fmt.Sprintf("del%d", attempt)
		h.do(http.MethodPost, "/v1/jobs", `{"job_id":"`+id+`","prompt":"Once upon a time","max_tokens":480}`)
		_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/"+id+"/events")
		untilToken(t, r)
		resp, body := h.do(http.MethodDelete, "/v1/jobs/"+id, "")
		if resp.StatusCode == http.StatusConflict {
			return true
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE: %s %s", resp.Status, body)
		}
		end, _ := lastEnd(t, r)
		if end.StopReason == jobs.StopMaxTokens || end.StopReason == jobs.StopEOS {
			return true
		}
		if end.StopReason != jobs.StopCancelled || end.TokensOut >= 480 {
			t.Fatalf("end %+v; want CANCELLED before 480 tokens", end)
		}
		if code, st := h.status(id); code != http.StatusOK || st.Status != bridge.StatusCancelled {
			t.Fatalf("status %d %+v; want cancelled", code, st)
		}
		return false
	})
}

func TestDeleteCancelsAQueuedJob(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	h.do(http.MethodPost, "/v1/jobs", `{"job_id":"early","prompt":"Once upon a time","max_tokens":40}`)
	if resp, body := h.do(http.MethodDelete, "/v1/jobs/early", ""); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE a queued job: %s %s", resp.Status, body)
	}
	testutil.StartWorker(t, h.natsURL)
	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/early/events")
	end, evs := lastEnd(t, r)
	if end.StopReason != jobs.StopCancelled || end.TokensOut != 0 {
		t.Fatalf("end %+v after %d events; want CANCELLED with no token", end, len(evs))
	}
}

func TestDisconnectCancelsTheJobItsPostStarted(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	raceable(t, func(attempt int) bool {
		id := fmt.Sprintf("dis%d", attempt)
		ctx, leave := context.WithCancel(context.Background())
		_, r := h.postStream(ctx, http.DefaultClient, `{"job_id":"`+id+`","prompt":"Once upon a time","max_tokens":480}`)
		untilToken(t, r)
		leave()
		_, replay := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/"+id+"/events")
		end, _ := lastEnd(t, replay)
		if end.StopReason != jobs.StopCancelled {
			return true
		}
		if end.TokensOut >= 480 {
			t.Fatalf("end %+v; want CANCELLED before 480 tokens", end)
		}
		return false
	})
}

func TestDisconnectLeavesTheJobWhenAsked(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	ctx, leave := context.WithCancel(context.Background())
	var addr string
	_, r := h.postStream(ctx, h.client(&addr),
		`{"job_id":"keep","prompt":"Once upon a time","max_tokens":300,"cancel_on_disconnect":false}`)
	untilToken(t, r)
	leave()
	h.waitClosed(addr, 10*time.Second)
	if _, err := h.cancelStored("keep"); err == nil {
		t.Fatal("a cancel was stored though the body said cancel_on_disconnect false")
	}
	_, replay := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/keep/events")
	end, _ := lastEnd(t, replay)
	if end.StopReason == jobs.StopCancelled {
		t.Fatalf("end %+v; the job was cancelled though the body said cancel_on_disconnect false", end)
	}
	data, _ := json.Marshal(end)
	t.Logf("end: %s", data)
}

func TestConcurrentJobsEachStreamHasItsOwn(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	const n = 6 // more than the worker's 4 slots: two wait their turn
	type result struct {
		id  string
		evs []sse
		err error
	}
	results := make(chan result, n)
	for i := range n {
		id := fmt.Sprintf("many%d", i)
		_, r := h.postStream(context.Background(), http.DefaultClient, `{"job_id":"`+id+`","prompt":"Once upon a time","max_tokens":50}`)
		go func() {
			evs, err := r.all()
			results <- result{id, evs, err}
		}()
	}
	for range n {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		checkSequence(t, res.evs, res.id, 1)
		evs := decodeAll(t, res.evs)
		if end, ok := evs[len(evs)-1].(*jobs.End); !ok || end.TokensOut == 0 {
			t.Fatalf("%s ended with %T %+v", res.id, evs[len(evs)-1], evs[len(evs)-1])
		}
	}
}
