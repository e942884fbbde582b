package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
)

// postStream submits a job asking for its event stream.
func (h *harness) postStream(ctx context.Context, client *http.Client, body string) (*http.Response, *sseReader) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/v1/jobs", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		h.t.Fatalf("POST with Accept text/event-stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return resp, newSSEReader(resp.Body)
}

func TestPostStreamDeliversTheJob(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	var addr string
	resp, r := h.postStream(context.Background(), h.client(&addr), `{"job_id":"p","prompt":"hi"}`)
	if resp.Header.Get("X-Job-Id") != "p" {
		t.Fatalf("X-Job-Id %q; want p", resp.Header.Get("X-Job-Id"))
	}
	h.script("p").started().token("a").end(jobs.StopEOS)
	evs := r.events(t)
	checkSequence(t, evs, "p", 1)
	if len(evs) != 3 {
		t.Fatalf("got %s; want started, token, end", ids(evs))
	}
	h.waitClosed(addr, 10*time.Second)
	if _, err := h.cancelStored("p"); err == nil {
		t.Fatal("a job whose stream ended was cancelled")
	}
}

func TestClientDisconnectCancels(t *testing.T) {
	for _, c := range []struct {
		name, body string
		cancels    bool
	}{
		{"by default", `{"job_id":"gone","prompt":"hi"}`, true},
		{"when asked", `{"job_id":"gone","prompt":"hi","cancel_on_disconnect":true}`, true},
		{"not when told not to", `{"job_id":"gone","prompt":"hi","cancel_on_disconnect":false}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := startBridge(t, bridge.Config{Heartbeat: time.Hour})
			ctx, leave := context.WithCancel(context.Background())
			var addr string
			_, r := h.postStream(ctx, h.client(&addr), c.body)
			h.script("gone").started()
			if m, err := r.next(); err != nil || m.Type != "started" {
				t.Fatalf("got %+v, %v; want started", m, err)
			}
			leave()
			// The bridge cancels before it closes the connection.
			h.waitClosed(addr, 10*time.Second)
			msg, err := h.cancelStored("gone")
			if stored := err == nil; stored != c.cancels {
				t.Fatalf("cancel stored: %v (%v); want %v", stored, err, c.cancels)
			}
			if c.cancels && msg.Subject != jobs.CancelSubject("gone") {
				t.Fatalf("cancel on %s", msg.Subject)
			}
		})
	}
}

func TestGetStreamDisconnectDoesNotCancel(t *testing.T) {
	h := startBridge(t, bridge.Config{Heartbeat: time.Hour})
	h.script("watched").started()
	ctx, leave := context.WithCancel(context.Background())
	var addr string
	_, r := h.openStream(ctx, h.client(&addr), "/v1/jobs/watched/events")
	if _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	leave()
	h.waitClosed(addr, 10*time.Second)
	if _, err := h.cancelStored("watched"); err == nil {
		t.Fatal("a watcher that left cancelled the job; only the stream of its POST may")
	}
}
