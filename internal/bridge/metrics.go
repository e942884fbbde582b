package bridge

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the bridge's Prometheus metrics, served at GET /metrics.
type metrics struct {
	reg        *prometheus.Registry
	streams    prometheus.Gauge
	resumes    prometheus.Counter
	dropped    prometheus.Counter
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	firstToken prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmbridge_sse_streams", Help: "SSE streams open now.",
		}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmbridge_sse_resumes_total", Help: "SSE streams opened with a Last-Event-ID (a client resuming).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmbridge_sse_dropped_total", Help: "SSE streams cut because the client did not take its events in time.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmbridge_http_requests_total", Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "llmbridge_http_request_duration_seconds", Help: "From a request's arrival to its answer's end (an SSE stream's whole life), by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12),
		}, []string{"route"}),
		firstToken: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmbridge_time_to_first_token_seconds", Help: "From a request's arrival to writing its first token to the SSE stream it opened (POST /v1/jobs with a stream, OpenAI streams).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
	}
	m.reg.MustRegister(m.streams, m.resumes, m.dropped, m.requests, m.duration, m.firstToken,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// arrivalKey keys the time a request arrived in its context.
type arrivalKey struct{}

// arrival is when the request of ctx arrived at the bridge.
func arrival(ctx context.Context) time.Time {
	t, _ := ctx.Value(arrivalKey{}).(time.Time)
	return t
}

// firstTokenTimer observes, on an answer's first token, the time from the
// request's arrival.
type firstTokenTimer struct {
	answer
	observe func()
}

func (a *firstTokenTimer) token(text string) error {
	if a.observe != nil {
		a.observe()
		a.observe = nil
	}
	return a.answer.token(text)
}

// request counts an answered request.
func (m *metrics) request(route string, code int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
}

// route is the pattern that serves r, "unmatched" for none: a bounded label.
func (s *Server) route(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		return pattern
	}
	return "unmatched"
}

// recorder notes the status code a handler answers with.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// write deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
