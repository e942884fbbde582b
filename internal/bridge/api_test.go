package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
)

// queueSeq is the last sequence of the work queue: it moves with every
// job published.
func (h *harness) queueSeq() uint64 {
	h.t.Helper()
	st, err := h.js.Stream(context.Background(), jobs.QueueStream)
	if err != nil {
		h.t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

func TestBadInputIs400AndNothingIsPublished(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	long := strings.Repeat("é", jobs.MaxPromptChars+1)
	cases := []struct {
		name, body, field string
	}{
		{"not JSON", `{"prompt":`, ""},
		{"not an object", `["hi"]`, ""},
		{"two objects", `{"prompt":"a"}{"prompt":"b"}`, ""},
		{"empty body", ``, ""},
		{"unknown field", `{"prompt":"hi","bogus":1}`, "bogus"},
		{"field in the wrong case", `{"prompt":"hi","JOB_ID":"x"}`, "JOB_ID"},
		{"bridge field in the wrong case", `{"prompt":"hi","Pool":"x"}`, "Pool"},
		{"wrong type", `{"prompt":42}`, "prompt"},
		{"missing prompt", `{"max_tokens":5}`, "prompt"},
		{"empty prompt", `{"prompt":""}`, "prompt"},
		{"prompt too long", `{"prompt":"` + long + `"}`, "prompt"},
		{"max_tokens zero", `{"prompt":"hi","max_tokens":0}`, "max_tokens"},
		{"max_tokens fraction", `{"prompt":"hi","max_tokens":1.5}`, "max_tokens"},
		{"temperature above 2", `{"prompt":"hi","temperature":2.5}`, "temperature"},
		{"top_k negative", `{"prompt":"hi","top_k":-1}`, "top_k"},
		{"top_p above 1", `{"prompt":"hi","top_p":1.5}`, "top_p"},
		{"min_p negative", `{"prompt":"hi","min_p":-0.1}`, "min_p"},
		{"repetition_penalty above 2", `{"prompt":"hi","repetition_penalty":3}`, "repetition_penalty"},
		{"seed negative", `{"prompt":"hi","seed":-1}`, "seed"},
		{"seed above 32 bits", `{"prompt":"hi","seed":4294967296}`, "seed"},
		{"too many stops", `{"prompt":"hi","stop":["a","b","c","d","e"]}`, "stop"},
		{"empty stop", `{"prompt":"hi","stop":[""]}`, "stop"},
		{"timeout_ms zero", `{"prompt":"hi","timeout_ms":0}`, "timeout_ms"},
		{"job_id with a dot", `{"prompt":"hi","job_id":"a.b"}`, "job_id"},
		{"job_id wildcard", `{"prompt":"hi","job_id":">"}`, "job_id"},
		{"job_id too long", `{"prompt":"hi","job_id":"` + strings.Repeat("a", 129) + `"}`, "job_id"},
		{"correlation_id too long", `{"prompt":"hi","correlation_id":"` + strings.Repeat("c", 129) + `"}`, "correlation_id"},
		{"pool with a space", `{"prompt":"hi","pool":"a b"}`, "pool"},
		{"pool wildcard", `{"prompt":"hi","pool":"*"}`, "pool"},
		{"cancel_on_disconnect not a bool", `{"prompt":"hi","cancel_on_disconnect":"no"}`, "cancel_on_disconnect"},
	}
	before := h.queueSeq()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.do(http.MethodPost, "/v1/jobs", c.body, "Content-Type", "application/json")
			var e jobs.Error
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %s %s (%v); want 400 with a JSON error", resp.Status, body, err)
			}
			if e.Code != jobs.InvalidRequest || e.Field != c.field || e.Message == "" {
				t.Fatalf("got %+v; want INVALID_REQUEST on field %q with a message", e, c.field)
			}
		})
	}
	if after := h.queueSeq(); after != before {
		t.Fatalf("the work queue moved from %d to %d: bad input was published", before, after)
	}
}

func TestBodyTooLargeIs413(t *testing.T) {
	h := startBridge(t, bridge.Config{MaxBodyBytes: 1 << 10})
	resp, body := h.do(http.MethodPost, "/v1/jobs", `{"prompt":"`+strings.Repeat("a", 2<<10)+`"}`)
	var e jobs.Error
	if resp.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(body, &e) != nil || e.Code != jobs.InvalidRequest {
		t.Fatalf("got %s %s; want 413 INVALID_REQUEST", resp.Status, body)
	}
	if seq := h.queueSeq(); seq != 0 {
		t.Fatalf("work queue at %d; want nothing published", seq)
	}
}

func TestBadPathParameters(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	for _, c := range []struct{ method, path, field string }{
		{http.MethodGet, "/v1/jobs/a%2Eb", "job_id"},
		{http.MethodDelete, "/v1/jobs/a%20b", "job_id"},
		{http.MethodGet, "/v1/jobs/a%3Eb/events", "job_id"},
		{http.MethodGet, "/v1/jobs/ok/events?last_event_id=x", "last_event_id"},
	} {
		resp, body := h.do(c.method, c.path, "")
		var e jobs.Error
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Field != c.field {
			t.Errorf("%s %s: got %s %s; want 400 on field %s", c.method, c.path, resp.Status, body, c.field)
		}
	}
}

func TestSubmitPublishesTheJobWithoutBridgeFields(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	for _, c := range []struct {
		body, subject string
	}{
		{`{"prompt":"Once","max_tokens":5,"cancel_on_disconnect":false}`, "jobs.execute"},
		{`{"prompt":"Once","pool":"gpu","seed":7}`, "jobs.execute.gpu"},
	} {
		resp, body := h.do(http.MethodPost, "/v1/jobs", c.body, "X-Correlation-Id", "corr-1")
		var a struct{ JobID, EventsURL string }
		if err := json.Unmarshal(body, &struct {
			JobID     *string `json:"job_id"`
			EventsURL *string `json:"events_url"`
		}{&a.JobID, &a.EventsURL}); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("got %s %s; want 202", resp.Status, body)
		}
		if !jobs.ValidSubjectToken(a.JobID) || a.EventsURL != "/v1/jobs/"+a.JobID+"/events" || resp.Header.Get("Location") != a.EventsURL {
			t.Fatalf("got %+v, Location %q; want an assigned id and its events URL", a, resp.Header.Get("Location"))
		}
		st, err := h.js.Stream(context.Background(), jobs.QueueStream)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := st.GetLastMsgForSubject(context.Background(), c.subject)
		if err != nil {
			t.Fatalf("no job on %s: %v", c.subject, err)
		}
		req, err := jobs.DecodeRequest(msg.Data)
		if err != nil {
			t.Fatalf("the published job is not a valid jobs.Request: %v: %s", err, msg.Data)
		}
		if req.JobID != a.JobID || req.CorrelationID != "corr-1" || msg.Header.Get(jetstream.MsgIDHeader) != a.JobID {
			t.Fatalf("published %s with Nats-Msg-Id %q; want job %s, correlation corr-1", msg.Data, msg.Header.Get(jetstream.MsgIDHeader), a.JobID)
		}
	}
}

func TestResubmittedJobIDIs409(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	body := `{"job_id":"twice","prompt":"hi"}`
	if resp, b := h.do(http.MethodPost, "/v1/jobs", body); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("first: %s %s", resp.Status, b)
	}
	resp, b := h.do(http.MethodPost, "/v1/jobs", body)
	var e jobs.Error
	if resp.StatusCode != http.StatusConflict || json.Unmarshal(b, &e) != nil || e.Code != jobs.Conflict {
		t.Fatalf("second: %s %s; want 409 CONFLICT", resp.Status, b)
	}
	if seq := h.queueSeq(); seq != 1 {
		t.Fatalf("work queue at %d; want the job once", seq)
	}
}

func (h *harness) status(id string) (int, bridge.JobStatus) {
	h.t.Helper()
	resp, body := h.do(http.MethodGet, "/v1/jobs/"+id, "")
	var st bridge.JobStatus
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &st); err != nil {
			h.t.Fatal(err)
		}
	}
	return resp.StatusCode, st
}

func TestStatusFollowsTheLastEvent(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	if code, _ := h.status("ghost"); code != http.StatusNotFound {
		t.Fatalf("unknown job: %d; want 404", code)
	}
	// Jobs ahead in the queue, so the lookup has to look past them.
	for i := range 3 {
		h.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"job_id":"other%d","prompt":"hi"}`, i))
	}
	h.do(http.MethodPost, "/v1/jobs", `{"job_id":"j","prompt":"hi"}`)
	want := func(status bridge.Status, seq uint64) {
		t.Helper()
		code, st := h.status("j")
		if code != http.StatusOK || st.Status != status || st.LastSeq != seq || st.JobID != "j" {
			t.Fatalf("got %d %+v; want %s at seq %d", code, st, status, seq)
		}
	}
	want(bridge.StatusQueued, 0)
	s := h.script("j").started()
	want(bridge.StatusRunning, 1)
	s.token("a").narration("token_progress", "🎯 Generated 10 tokens")
	want(bridge.StatusRunning, 3)
	s.end(jobs.StopEOS)
	want(bridge.StatusDone, 4)

	for _, c := range []struct {
		id   string
		last func(*script)
		want bridge.Status
	}{
		{"c", func(s *script) { s.end(jobs.StopCancelled) }, bridge.StatusCancelled},
		{"f", func(s *script) { s.fail() }, bridge.StatusFailed},
	} {
		c.last(h.script(c.id).started())
		if code, st := h.status(c.id); code != http.StatusOK || st.Status != c.want {
			t.Fatalf("%s: got %d %+v; want %s", c.id, code, st, c.want)
		}
	}
}

func TestDeleteStoresACancel(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	h.do(http.MethodPost, "/v1/jobs", `{"job_id":"q","prompt":"hi"}`)
	h.script("r").started()
	h.script("d").started().end(jobs.StopEOS)

	for _, c := range []struct {
		id   string
		code int
	}{{"q", http.StatusAccepted}, {"r", http.StatusAccepted}, {"d", http.StatusConflict}, {"none", http.StatusNotFound}} {
		resp, body := h.do(http.MethodDelete, "/v1/jobs/"+c.id, "")
		if resp.StatusCode != c.code {
			t.Fatalf("DELETE %s: %s %s; want %d", c.id, resp.Status, body, c.code)
		}
		_, err := h.cancelStored(c.id)
		if stored := err == nil; stored != (c.code == http.StatusAccepted) {
			t.Fatalf("DELETE %s answered %d, cancel stored: %v", c.id, c.code, stored)
		}
	}
}

// cancelStored is the cancel stored for a job in JOB_CANCELS.
func (h *harness) cancelStored(id string) (*jetstream.RawStreamMsg, error) {
	st, err := h.js.Stream(context.Background(), jobs.CancelStream)
	if err != nil {
		h.t.Fatal(err)
	}
	return st.GetLastMsgForSubject(context.Background(), jobs.CancelSubject(id))
}

func TestAuthToken(t *testing.T) {
	h := startBridge(t, bridge.Config{AuthToken: "s3cret"})
	for _, c := range []struct {
		name, path, auth string
		code             int
	}{
		{"no token", "/v1/jobs/x", "", http.StatusUnauthorized},
		{"wrong token", "/v1/jobs/x", "Bearer nope", http.StatusUnauthorized},
		{"not bearer", "/v1/jobs/x", "Basic czNjcmV0", http.StatusUnauthorized},
		{"events without token", "/v1/jobs/x/events", "", http.StatusUnauthorized},
		{"right token", "/v1/jobs/x", "Bearer s3cret", http.StatusNotFound},
		{"healthz is open", "/healthz", "", http.StatusOK},
		{"page is open", "/", "", http.StatusOK},
	} {
		resp, body := h.do(http.MethodGet, c.path, "", "Authorization", c.auth)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %s %s; want %d", c.name, resp.Status, body, c.code)
		}
		if c.code == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate: Bearer", c.name)
		}
	}
	resp, body := h.do(http.MethodPost, "/v1/jobs", `{"prompt":"hi"}`)
	if resp.StatusCode != http.StatusUnauthorized || h.queueSeq() != 0 {
		t.Fatalf("POST without token: %s %s, queue at %d; want 401 and nothing published", resp.Status, body, h.queueSeq())
	}
}

func TestCORS(t *testing.T) {
	h := startBridge(t, bridge.Config{CORSOrigins: []string{"https://app.example"}, AuthToken: "t"})
	resp, _ := h.do(http.MethodOptions, "/v1/jobs", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight from an allowed origin: %s %v", resp.Status, resp.Header)
	}
	resp, _ = h.do(http.MethodOptions, "/v1/jobs", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin allowed: %v", resp.Header)
	}
	resp, _ = h.do(http.MethodGet, "/v1/jobs/x", "", "Origin", "https://app.example", "Authorization", "Bearer t")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Job-Id") {
		t.Fatalf("request from an allowed origin: %v", resp.Header)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, body := h.do(http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", path, resp.Status, body)
		}
	}
	if err := h.js.DeleteStream(context.Background(), jobs.CancelStream); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(http.MethodGet, "/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), jobs.CancelStream) {
		t.Fatalf("readyz without %s: %s %s; want 503 naming it", jobs.CancelStream, resp.Status, body)
	}
	if err := bridge.CreateMissingStreams(context.Background(), h.js, 1); err != nil {
		t.Fatal(err)
	}
	if resp, body := h.do(http.MethodGet, "/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after the streams are back: %s %s", resp.Status, body)
	}
	h.nc.Close()
	if resp, body := h.do(http.MethodGet, "/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with NATS closed: %s %s; want 503", resp.Status, body)
	}
	if resp, _ := h.do(http.MethodGet, "/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz with NATS closed: %s; want 200: the process is up", resp.Status)
	}
}
