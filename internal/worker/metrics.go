package worker

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics, named as vLLM's and
// llama.cpp's servers name theirs where they measure the same. A nil
// *Metrics records nothing.
type Metrics struct {
	jobs         *prometheus.CounterVec
	tokens       prometheus.Counter
	promptTokens prometheus.Counter
	cachedTokens prometheus.Counter
	cacheHits    prometheus.Counter
	queueTime    prometheus.Histogram
	ttft         prometheus.Histogram
	itl          prometheus.Histogram
	duration     prometheus.Histogram
	running      prometheus.Gauge
	slots        prometheus.Gauge
	// waiting reads the pool's queue at each scrape; nil until the worker
	// has its consumer.
	waiting atomic.Pointer[func() float64]
}

// NewMetrics registers a worker's metrics with reg, labelled with its model
// and pool.
func NewMetrics(reg prometheus.Registerer, model, pool string) *Metrics {
	if pool == "" {
		pool = "default"
	}
	labels := prometheus.Labels{"model": model, "pool": pool}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: labels, Buckets: buckets})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmworker_jobs_total", ConstLabels: labels,
			Help: "Jobs settled, by outcome: a stop reason (max_tokens, eos, stop_sequence, cancelled, timeout), an error code (invalid_request, context_overflow, inference_failed, retries_exhausted), handed_back (shutdown, or events that could not be stored), lost (given to another worker while this one stalled) or dropped (a duplicate, or cancelled while queued by another worker).",
		}, []string{"outcome"}),
		tokens:       counter("llmworker_generation_tokens_total", "Tokens the model generated."),
		promptTokens: counter("llmworker_prompt_tokens_total", "Prompt tokens of the jobs run."),
		cachedTokens: counter("llmworker_prompt_tokens_cached_total", "Prompt tokens found in a slot's KV cache and not computed again."),
		cacheHits:    counter("llmworker_prompt_cache_hits_total", "Jobs that found part of their prompt in a slot's KV cache."),
		queueTime: histogram("llmworker_queue_time_seconds",
			"From a job's publication to a worker taking it, on its first delivery.",
			prometheus.ExponentialBuckets(0.001, 2, 20)),
		ttft: histogram("llmworker_time_to_first_token_seconds",
			"From taking a job off the queue to publishing its first token.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)),
		itl: histogram("llmworker_inter_token_latency_seconds",
			"Between two tokens of a job published one after the other.",
			prometheus.ExponentialBuckets(0.0001, 2, 16)),
		duration: histogram("llmworker_job_duration_seconds",
			"From taking a job off the queue to settling it.",
			prometheus.ExponentialBuckets(0.001, 2, 20)),
		running: gauge("llmworker_requests_running", "Jobs running now."),
		slots:   gauge("llmworker_slots", "Jobs the worker runs at once."),
	}
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "llmworker_requests_waiting", ConstLabels: labels,
		Help: "Jobs waiting in the worker's pool (shared by the pool's workers; -1 when the queue cannot be read).",
	}, func() float64 {
		if f := m.waiting.Load(); f != nil {
			return (*f)()
		}
		return 0
	})
	reg.MustRegister(m.jobs, m.tokens, m.promptTokens, m.cachedTokens, m.cacheHits,
		m.queueTime, m.ttft, m.itl, m.duration, m.running, m.slots, waiting)
	return m
}

func (m *Metrics) setSlots(n int) {
	if m != nil {
		m.slots.Set(float64(n))
	}
}

// watchQueue makes llmworker_requests_waiting read the pool's queue.
func (m *Metrics) watchQueue(waiting func() float64) {
	if m != nil {
		m.waiting.Store(&waiting)
	}
}

// started counts a job in; the returned func counts it out.
func (m *Metrics) started() func() {
	if m == nil {
		return func() {}
	}
	m.running.Inc()
	begin := time.Now()
	return func() {
		m.running.Dec()
		m.duration.Observe(time.Since(begin).Seconds())
	}
}

// taken records how long a job waited in the queue.
func (m *Metrics) taken(published, taken time.Time) {
	if m != nil && !published.IsZero() {
		m.queueTime.Observe(max(0, taken.Sub(published).Seconds()))
	}
}

func (m *Metrics) firstToken(since time.Time) {
	if m != nil {
		m.ttft.Observe(time.Since(since).Seconds())
	}
}

func (m *Metrics) nextToken(gap time.Duration) {
	if m != nil {
		m.itl.Observe(gap.Seconds())
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
	if cached > 0 {
		m.cacheHits.Inc()
	}
	m.tokens.Add(float64(generated))
}
