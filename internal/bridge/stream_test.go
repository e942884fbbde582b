package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// checkSequence checks events are the job's, numbered 1.. without gaps
// from first, with ids equal to their seq and event names equal to their
// type.
func checkSequence(t *testing.T, evs []sse, id string, first uint64) {
	t.Helper()
	for i, e := range evs {
		var h jobs.Header
		if err := json.Unmarshal(e.Data, &h); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, e.Data)
		}
		if want := first + uint64(i); e.ID != want || h.Seq != want || string(h.Type) != e.Type || h.JobID != id {
			t.Fatalf("event %d: id %d, event %q, data %s; want id and seq %d of job %s (got %s)", i, e.ID, e.Type, e.Data, want, id, ids(evs))
		}
	}
}

func TestLateJoinReplaysFinishedJob(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	h.script("late").started().narration("request_validated", "✅ Request validated").
		token("Once").token(" upon").end(jobs.StopMaxTokens)

	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/late/events")
	evs := r.events(t)
	if len(evs) != 5 || evs[4].Type != "end" {
		t.Fatalf("got %s; want the 5 events, end last", ids(evs))
	}
	checkSequence(t, evs, "late", 1)
}

func TestFollowsLiveEventsInOrderAndClosesAfterTerminal(t *testing.T) {
	for _, terminal := range []string{"end", "error"} {
		t.Run(terminal, func(t *testing.T) {
			h := startBridge(t, bridge.Config{})
			s := h.script("live").started()
			_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/live/events")
			first, err := r.next()
			if err != nil || first.Type != "started" {
				t.Fatalf("first message %+v, %v; want started", first, err)
			}
			for i := range 20 {
				s.token(string(rune('a' + i)))
			}
			if terminal == "end" {
				s.end(jobs.StopEOS)
			} else {
				s.fail()
			}
			evs := append([]sse{first}, r.events(t)...)
			if len(evs) != 22 || evs[21].Type != terminal {
				t.Fatalf("got %s; want 22 events, %s last", ids(evs), terminal)
			}
			checkSequence(t, evs, "live", 1)
		})
	}
}

func TestResumeAfterLastEventID(t *testing.T) {
	for _, how := range []string{"header", "query"} {
		t.Run(how, func(t *testing.T) {
			h := startBridge(t, bridge.Config{})
			s := h.script("resume").started().token("a").token("b")

			// A first client reads three events, then goes away mid-job.
			ctx, drop := context.WithCancel(context.Background())
			_, r := h.openStream(ctx, http.DefaultClient, "/v1/jobs/resume/events")
			var seen []sse
			for len(seen) < 3 {
				m, err := r.next()
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, m)
			}
			drop()
			s.token("c").token("d")

			path, header := "/v1/jobs/resume/events", []string{"Last-Event-ID", "3"}
			if how == "query" {
				path, header = path+"?last_event_id=3", nil
			}
			_, r2 := h.openStream(context.Background(), http.DefaultClient, path, header...)
			got, err := r2.next()
			if err != nil {
				t.Fatal(err)
			}
			s.token("e").end(jobs.StopMaxTokens)
			rest := append([]sse{got}, r2.events(t)...)
			checkSequence(t, rest, "resume", 4)
			if len(rest) != 4 {
				t.Fatalf("after id 3 got %s; want ids 4 to 7", ids(rest))
			}
			var text strings.Builder
			for _, e := range append(seen, rest...) {
				var tok jobs.Token
				if e.Type == "token" && json.Unmarshal(e.Data, &tok) == nil {
					text.WriteString(tok.T)
				}
			}
			if text.String() != "abcde" {
				t.Fatalf("text across the two streams %q; want abcde, nothing lost or repeated", text.String())
			}
		})
	}
}

func TestResumeAfterTerminalClosesAtOnce(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	h.script("over").started().end(jobs.StopEOS)
	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/over/events", "Last-Event-ID", "2")
	if evs := r.events(t); len(evs) != 0 {
		t.Fatalf("got %s after the terminal event's id; want nothing", ids(evs))
	}
}

func TestHeartbeats(t *testing.T) {
	h := startBridge(t, bridge.Config{Heartbeat: 20 * time.Millisecond})
	h.script("idle").started()
	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/idle/events")
	start := time.Now()
	pings := 0
	for pings < 3 {
		m, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Comment == "ping" {
			pings++
		}
	}
	// Three pings at 20 ms take at least 60 ms: they are paced, not a burst.
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Fatalf("3 pings in %v; want them every 20ms", elapsed)
	}
}

func TestUnknownJobIs404AfterTheWait(t *testing.T) {
	const wait = 150 * time.Millisecond
	h := startBridge(t, bridge.Config{NotFoundWait: wait})
	start := time.Now()
	resp, body := h.do(http.MethodGet, "/v1/jobs/nobody/events", "")
	elapsed := time.Since(start)
	var e jobs.Error
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Code != jobs.NotFound {
		t.Fatalf("got %s %s; want 404 NOT_FOUND", resp.Status, body)
	}
	if elapsed < wait {
		t.Fatalf("404 after %v; want it after the %v wait", elapsed, wait)
	}
}

func TestJobThatShowsUpDuringTheWaitIsStreamed(t *testing.T) {
	h := startBridge(t, bridge.Config{NotFoundWait: time.Minute})
	type result struct {
		evs []sse
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(h.URL + "/v1/jobs/soon/events")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- result{err: errors.New(resp.Status)}
			return
		}
		evs, err := newSSEReader(resp.Body).all()
		done <- result{evs: evs, err: err}
	}()
	// Publish only once the bridge follows the job: its consumer exists.
	waitFor(t, "the bridge's consumer on JOB_EVENTS", func() bool {
		st, err := h.js.Stream(context.Background(), jobs.EventsStream)
		return err == nil && st.CachedInfo().State.Consumers > 0
	})
	h.script("soon").started().end(jobs.StopEOS)
	select {
	case res := <-done:
		if res.err != nil || len(res.evs) != 2 {
			t.Fatalf("got %s, %v; want started and end", ids(res.evs), res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not deliver the job's events")
	}
}

func TestQueuedJobStreamsAtOnce(t *testing.T) {
	h := startBridge(t, bridge.Config{NotFoundWait: time.Hour, Heartbeat: 10 * time.Millisecond})
	if resp, body := h.do(http.MethodPost, "/v1/jobs", `{"job_id":"waiting","prompt":"hi"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %s", resp.Status, body)
	}
	// The answer comes before the hour's wait, since the job is queued.
	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/waiting/events")
	if m, err := r.next(); err != nil || m.Comment != "ping" {
		t.Fatalf("got %+v, %v; want a ping while the job waits", m, err)
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowClientIsDroppedOthersUnaffected(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	h := startBridge(t, bridge.Config{WriteTimeout: writeTimeout, Heartbeat: time.Hour})
	s := h.script("flood").started()

	// A client that sends its request and never reads, with a small window.
	d := net.Dialer{}
	conn, err := d.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(conn, "GET /v1/jobs/flood/events HTTP/1.1\r\nHost: bridge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	slowAddr := conn.LocalAddr().String()

	// Far more than the socket buffers hold.
	big := strings.Repeat("x", 16<<10)
	for range 800 {
		s.token(big)
	}
	s.end(jobs.StopMaxTokens)

	start := time.Now()
	_, fast := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/flood/events")
	evs := fast.events(t)
	if len(evs) != 802 {
		t.Fatalf("the reading client got %d events; want all 802", len(evs))
	}
	checkSequence(t, evs, "flood", 1)
	t.Logf("reading client: 802 events (13 MB) in %v", time.Since(start))

	h.waitClosed(slowAddr, writeTimeout+10*time.Second)
	t.Logf("slow client dropped %v after the reading client started", time.Since(start))
	if dropped := testutil.ScrapeMetrics(t, h.URL+"/metrics").Value("llmbridge_sse_dropped_total"); dropped != 1 {
		t.Errorf("llmbridge_sse_dropped_total = %v, want 1", dropped)
	}
	// It had been answered with a stream before it stopped reading.
	head := make([]byte, len("HTTP/1.1 200 OK"))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, head); err != nil || string(head) != "HTTP/1.1 200 OK" {
		t.Fatalf("the dropped client read %q, %v; want a 200 stream", head, err)
	}
}

func TestStreamNeedsEventsStream(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	if err := h.js.DeleteStream(context.Background(), jobs.EventsStream); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(http.MethodGet, "/v1/jobs/x/events", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %s %s; want 503", resp.Status, body)
	}
}

// A stream asked for after Close is refused, rather than starting a
// consumer that nothing would stop.
func TestStreamAfterCloseIs503(t *testing.T) {
	h := startBridge(t, bridge.Config{NotFoundWait: time.Millisecond})
	h.srv.Close()
	resp, body := h.do(http.MethodGet, "/v1/jobs/x/events", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "shutting down") {
		t.Fatalf("got %s %s; want 503 saying the bridge is shutting down", resp.Status, body)
	}
}

func TestJoinWhileEventsFlowLosesNothing(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	const tokens, clients = 400, 16
	s := h.script("flow").started()
	// Clients join at spread points of a job whose events keep coming: each
	// gets the stored ones, then the live ones, without a gap or a repeat.
	type result struct {
		evs []sse
		err error
	}
	results := make(chan result, clients)
	for i := range tokens {
		if i%(tokens/clients) == 0 {
			resume := i % 3 // some resume after an event they have
			go func() {
				req, _ := http.NewRequest(http.MethodGet, h.URL+"/v1/jobs/flow/events", nil)
				if resume > 0 {
					req.Header.Set("Last-Event-ID", strconv.Itoa(resume))
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					results <- result{err: err}
					return
				}
				defer resp.Body.Close()
				evs, err := newSSEReader(resp.Body).all()
				results <- result{evs: evs, err: err}
			}()
		}
		s.token("t")
	}
	s.end(jobs.StopMaxTokens)
	for range clients {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		if len(res.evs) == 0 {
			t.Fatal("a client got nothing")
		}
		first := res.evs[0].ID
		checkSequence(t, res.evs, "flow", first)
		if first > 3 || res.evs[len(res.evs)-1].Type != "end" || res.evs[len(res.evs)-1].ID != tokens+2 {
			t.Fatalf("a client got ids %d to %d; want from its resume point to the end (%d)", first, res.evs[len(res.evs)-1].ID, tokens+2)
		}
	}
}
