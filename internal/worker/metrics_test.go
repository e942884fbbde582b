package worker_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

func TestMetrics(t *testing.T) {
	e := setup(t)
	reg := prometheus.NewPedanticRegistry()
	m := worker.NewMetrics(reg, "stories260K", "")
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Metrics: m})
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("counted", "Once upon a time", 25))
	testutil.Submit(t, e.js, jobs.ExecuteSubject, []byte(`{"job_id":"refused","prompt":""}`))
	testutil.Events(t, e.js, "counted", 30*time.Second)
	testutil.Events(t, e.js, "refused", 30*time.Second)

	// A job's slot is counted free just after its message is settled, and
	// nothing tells when: poll the registry until both jobs are counted out.
	deadline := time.Now().Add(10 * time.Second)
	values := gather(t, reg)
	for values["llmworker_job_duration_seconds"] < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		values = gather(t, reg)
	}
	want := map[string]float64{
		"llmworker_jobs_total{max_tokens}":      1,
		"llmworker_jobs_total{invalid_request}": 1,
		"llmworker_generated_tokens_total":      25,
		"llmworker_prompt_tokens_total":         5,
		"llmworker_prompt_tokens_cached_total":  0,
		"llmworker_time_to_first_token_seconds": 1,
		"llmworker_job_duration_seconds":        2,
		"llmworker_slots":                       4,
		"llmworker_slots_busy":                  0,
	}
	for name, v := range want {
		if values[name] != v {
			t.Errorf("%s = %v, want %v", name, values[name], v)
		}
	}
}

// gather reads a registry's values by name, with the outcome label; a
// histogram's value is its count.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			name := f.GetName()
			for _, l := range metric.GetLabel() {
				if l.GetName() == "outcome" {
					name += "{" + l.GetValue() + "}"
				}
			}
			switch {
			case metric.Counter != nil:
				values[name] = metric.Counter.GetValue()
			case metric.Gauge != nil:
				values[name] = metric.Gauge.GetValue()
			case metric.Histogram != nil:
				values[name] = float64(metric.Histogram.GetSampleCount())
			}
		}
	}
	return values
}
