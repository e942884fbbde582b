package worker_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// The worker's metrics, scraped as Prometheus does, move as jobs wait,
// run and end.
func TestMetrics(t *testing.T) {
	e := setup(t)
	reg := prometheus.NewPedanticRegistry()
	m := worker.NewMetrics(reg, "stories260K", "")
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	scrape := func() testutil.Scrape { return testutil.ScrapeMetrics(t, srv.URL) }

	real, err := engine.Load(engine.Config{ModelPath: testutil.ModelPath(t), Parallel: 1, ContextSize: 128, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(real.Close)
	gated := gatedEngine{Engine: real, gate: make(chan struct{}), entered: make(chan string, 1)}
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Metrics: m, Parallel: 1, Engine: gated})
	if s := scrape(); s.Value("llmworker_slots") != 1 || !s.Has("llmworker_requests_waiting") || s.Value("llmworker_jobs_total") != 0 {
		t.Fatalf("before any job: slots %v, jobs %v", s.Value("llmworker_slots"), s.Value("llmworker_jobs_total"))
	}

	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("counted", "Once upon a time", 25))
	<-gated.entered
	testutil.Submit(t, e.js, jobs.ExecuteSubject, []byte(`{"job_id":"refused","prompt":""}`))
	// The server counts a stored job as pending a moment after it acks it.
	s := pollMetrics(t, scrape, func(s testutil.Scrape) bool { return s.Value("llmworker_requests_waiting") == 1 })
	if s.Value("llmworker_requests_running") != 1 || s.Value("llmworker_requests_waiting") != 1 {
		t.Errorf("one job held, one behind it: running %v, waiting %v",
			s.Value("llmworker_requests_running"), s.Value("llmworker_requests_waiting"))
	}
	close(gated.gate)
	end := summarize(t, testutil.Events(t, e.js, "counted", 30*time.Second)).end(t)
	testutil.Events(t, e.js, "refused", 30*time.Second)

	// A job's slot is counted free just after its message is settled, and
	// nothing tells when.
	s = pollMetrics(t, scrape, func(s testutil.Scrape) bool { return s.Value("llmworker_job_duration_seconds") == 2 })
	want := map[string]float64{
		"llmworker_generation_tokens_total":     25,
		"llmworker_prompt_tokens_total":         5,
		"llmworker_prompt_tokens_cached_total":  0,
		"llmworker_prompt_cache_hits_total":     0,
		"llmworker_time_to_first_token_seconds": 1,
		"llmworker_inter_token_latency_seconds": float64(end.TokensOut - 1),
		"llmworker_queue_time_seconds":          2,
		"llmworker_job_duration_seconds":        2,
		"llmworker_slots":                       1,
		"llmworker_requests_running":            0,
		"llmworker_requests_waiting":            0,
	}
	for name, v := range want {
		if got := s.Value(name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	for outcome, v := range map[string]float64{"max_tokens": 1, "invalid_request": 1} {
		if got := s.Value("llmworker_jobs_total", "outcome", outcome, "model", "stories260K", "pool", "default"); got != v {
			t.Errorf("llmworker_jobs_total{outcome=%q} = %v, want %v", outcome, got, v)
		}
	}
}

// A job that shares its prompt's start with the slot's last job counts a
// prompt cache hit.
func TestMetricsPromptCacheHit(t *testing.T) {
	e := setup(t)
	reg := prometheus.NewPedanticRegistry()
	m := worker.NewMetrics(reg, "stories260K", "")
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Metrics: m, Parallel: 1})
	for _, id := range []string{"first", "second"} {
		testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob(id, "Once upon a time there was a", 5))
		testutil.Events(t, e.js, id, 30*time.Second)
	}
	s := pollMetrics(t, func() testutil.Scrape { return testutil.ScrapeMetrics(t, srv.URL) },
		func(s testutil.Scrape) bool { return s.Value("llmworker_jobs_total") == 2 })
	if hits, cached := s.Value("llmworker_prompt_cache_hits_total"), s.Value("llmworker_prompt_tokens_cached_total"); hits != 1 || cached < 1 {
		t.Errorf("cache hits %v, cached tokens %v; want one hit", hits, cached)
	}
}

// pollMetrics scrapes until ready says the values are there, for at most
// 10 seconds; it returns the last scrape.
func pollMetrics(t *testing.T, scrape func() testutil.Scrape, ready func(testutil.Scrape) bool) testutil.Scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	s := scrape()
	for !ready(s) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the values live on the server: nothing to wait on
		s = scrape()
	}
	return s
}
