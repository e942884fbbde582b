package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// The bridge's metrics, scraped as Prometheus does, move as streams open,
// resume and close and as requests are answered.
func TestMetrics(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	scrape := func() testutil.Scrape { return testutil.ScrapeMetrics(t, h.URL+"/metrics") }
	if s := scrape(); s.Value("llmbridge_sse_streams") != 0 || !s.Has("go_goroutines") {
		t.Fatalf("before any stream: %v open, go_goroutines exported %v", s.Value("llmbridge_sse_streams"), s.Has("go_goroutines"))
	}

	var addr string
	_, r := h.postStream(context.Background(), h.client(&addr), `{"job_id":"m","prompt":"hi"}`)
	job := h.script("m").started()
	if ev, err := r.next(); err != nil || ev.Type != "started" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	if s := scrape(); s.Value("llmbridge_sse_streams") != 1 || s.Value("llmbridge_time_to_first_token_seconds") != 0 {
		t.Errorf("while streaming: %v streams open, %v first tokens", s.Value("llmbridge_sse_streams"), s.Value("llmbridge_time_to_first_token_seconds"))
	}
	job.token("a").token("b").end(jobs.StopEOS)
	r.events(t)
	h.waitClosed(addr, 10*time.Second)

	_, resumed := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/m/events", "Last-Event-ID", "2")
	if evs := resumed.events(t); len(evs) != 2 {
		t.Fatalf("resumed after 2: %s", ids(evs))
	}
	h.do(http.MethodGet, "/v1/jobs/m", "")
	h.do(http.MethodGet, "/nowhere", "")
	h.do(http.MethodPost, "/v1/jobs", `{"prompt":""}`)

	s := pollScrape(t, scrape, func(s testutil.Scrape) bool { return s.Value("llmbridge_sse_streams") == 0 })
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"llmbridge_sse_streams", nil, 0},
		{"llmbridge_sse_resumes_total", nil, 1},
		{"llmbridge_sse_dropped_total", nil, 0},
		{"llmbridge_time_to_first_token_seconds", nil, 1},
		{"llmbridge_http_requests_total", []string{"route", "POST /v1/jobs", "code", "200"}, 1},
		{"llmbridge_http_requests_total", []string{"route", "POST /v1/jobs", "code", "400"}, 1},
		{"llmbridge_http_requests_total", []string{"route", "GET /v1/jobs/{job_id}/events", "code", "200"}, 1},
		{"llmbridge_http_requests_total", []string{"route", "GET /v1/jobs/{job_id}", "code", "200"}, 1},
		{"llmbridge_http_requests_total", []string{"route", "unmatched", "code", "404"}, 1},
		{"llmbridge_http_request_duration_seconds", []string{"route", "POST /v1/jobs"}, 2},
	}
	for _, w := range want {
		if got := s.Value(w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

// /metrics is served without the bearer token, as /healthz is, and
// a refused request is counted under the route it asked for.
func TestMetricsNeedNoToken(t *testing.T) {
	h := startBridge(t, bridge.Config{AuthToken: "secret"})
	if resp, _ := h.do(http.MethodGet, "/v1/jobs/x", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %s", resp.Status)
	}
	s := testutil.ScrapeMetrics(t, h.URL+"/metrics")
	if got := s.Value("llmbridge_http_requests_total", "route", "GET /v1/jobs/{job_id}", "code", "401"); got != 1 {
		t.Errorf("401s counted under GET /v1/jobs/{job_id}: %v", got)
	}
}

// pollScrape scrapes until ready, for at most 10 seconds: a handler's end
// is counted just after its client has read the last byte.
func pollScrape(t *testing.T, scrape func() testutil.Scrape, ready func(testutil.Scrape) bool) testutil.Scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	s := scrape()
	for !ready(s) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // nothing to wait on but the values
		s = scrape()
	}
	return s
}

// An OpenAI streaming completion is an SSE stream too: it is counted open
// while it runs, and its first token timed from the request's arrival.
func TestMetricsOpenAIStream(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	resp, body := h.do(http.MethodPost, "/v1/chat/completions",
		`{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":5,"stream":true}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("%s %s", resp.Status, body)
	}
	s := pollScrape(t, func() testutil.Scrape { return testutil.ScrapeMetrics(t, h.URL+"/metrics") },
		func(s testutil.Scrape) bool { return s.Value("llmbridge_sse_streams") == 0 })
	if got := s.Value("llmbridge_time_to_first_token_seconds"); got != 1 {
		t.Errorf("first tokens timed: %v, want 1", got)
	}
	if got := s.Value("llmbridge_http_requests_total", "route", "POST /v1/chat/completions", "code", "200"); got != 1 {
		t.Errorf("POST /v1/chat/completions 200 counted %v times", got)
	}
}
