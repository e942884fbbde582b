package worker

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	jobs         *prometheus.CounterVec
	tokens       prometheus.Counter
	promptTokens prometheus.Counter
	cachedTokens prometheus.Counter
	ttft         prometheus.Histogram
	duration     prometheus.Histogram
	busy         prometheus.Gauge
	slots        prometheus.Gauge
}

// NewMetrics registers a worker's metrics with reg, labelled with its model
// and pool.
func NewMetrics(reg prometheus.Registerer, model, pool string) *Metrics {
	if pool == "" {
		pool = "default"
	}
	labels := prometheus.Labels{"model": model, "pool": pool}
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmworker_jobs_total", ConstLabels: labels,
			Help: "Jobs settled, by outcome: a stop reason (max_tokens, eos, stop_sequence, cancelled, timeout), an error code (invalid_request, context_overflow, inference_failed), handed_back (shutdown, or events that could not be stored) or dropped (a duplicate, or cancelled while queued by another worker).",
		}, []string{"outcome"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmworker_generated_tokens_total", ConstLabels: labels,
			Help: "Tokens the model generated.",
		}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmworker_prompt_tokens_total", ConstLabels: labels,
			Help: "Prompt tokens of the jobs run.",
		}),
		cachedTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmworker_prompt_tokens_cached_total", ConstLabels: labels,
			Help: "Prompt tokens found in a slot's KV cache and not computed again.",
		}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmworker_time_to_first_token_seconds", ConstLabels: labels,
			Help:    "From taking a job off the queue to publishing its first token.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmworker_job_duration_seconds", ConstLabels: labels,
			Help:    "From taking a job off the queue to settling it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmworker_slots_busy", ConstLabels: labels,
			Help: "Jobs running now.",
		}),
		slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmworker_slots", ConstLabels: labels,
			Help: "Jobs the worker runs at once.",
		}),
	}
	reg.MustRegister(m.jobs, m.tokens, m.promptTokens, m.cachedTokens, m.ttft, m.duration, m.busy, m.slots)
	return m
}

func (m *Metrics) setSlots(n int) {
	if m != nil {
		m.slots.Set(float64(n))
	}
}

// started counts a job in; the returned func counts it out.
func (m *Metrics) started() func() {
	if m == nil {
		return func() {}
	}
	m.busy.Inc()
	begin := time.Now()
	return func() {
		m.busy.Dec()
		m.duration.Observe(time.Since(begin).Seconds())
	}
}

func (m *Metrics) firstToken(since time.Time) {
	if m != nil {
		m.ttft.Observe(time.Since(since).Seconds())
	}
}

// settled counts a job's outcome, and its tokens when it generated.
func (m *Metrics) settled(outcome string, prompt, cached, generated int) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(strings.ToLower(outcome)).Inc()
	m.promptTokens.Add(float64(prompt))
	m.cachedTokens.Add(float64(cached))
	m.tokens.Add(float64(generated))
}
