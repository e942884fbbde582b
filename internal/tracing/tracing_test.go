package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// A trace context is read from NATS headers whatever the case of their
// names (nats pub -H sends them as typed), and written back in lower case.
func TestNATSHeaders(t *testing.T) {
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		ctx := FromNATS(context.Background(), nats.Header{key: {traceparent}, "tracestate": {"a=1"}})
		if got := TraceID(ctx); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("%s: trace id %q", key, got)
		}
		h := NATSHeader(ctx)
		if h.Get("traceparent") != traceparent || h.Get("tracestate") != "a=1" {
			t.Errorf("%s: written back as %v", key, h)
		}
	}
}

// Without a trace context nothing is added to a message, and a bad
// traceparent is no trace context.
func TestNoTrace(t *testing.T) {
	if h := NATSHeader(context.Background()); h != nil {
		t.Errorf("header %v for no trace", h)
	}
	ctx := FromHTTP(context.Background(), http.Header{"Traceparent": {"00-zz-yy-01"}})
	if id := TraceID(ctx); id != "" || NATSHeader(ctx) != nil {
		t.Errorf("a malformed traceparent gave trace %q", id)
	}
}

// With no endpoint, Setup installs no SDK: the tracer records nothing,
// and a trace that arrives is only carried.
func TestSetupWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	stop, err := Setup(context.Background(), "test", "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	ctx := FromHTTP(context.Background(), http.Header{"Traceparent": {traceparent}})
	ctx, span := Tracer().Start(ctx, "x")
	defer span.End()
	if span.IsRecording() || TraceID(ctx) != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("recording %v, trace %s", span.IsRecording(), TraceID(ctx))
	}
	if _, sdk := otel.GetTracerProvider().(interface{ ForceFlush(context.Context) error }); sdk {
		t.Error("an SDK provider was installed")
	}
}

// With an endpoint, spans go out over OTLP/HTTP to <endpoint>/v1/traces.
func TestSetupExportsToEndpoint(t *testing.T) {
	got := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	previous := otel.GetTracerProvider()
	defer otel.SetTracerProvider(previous)
	stop, err := Setup(context.Background(), "test", "dev")
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer().Start(context.Background(), "exported")
	span.End()
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req != "POST /v1/traces application/x-protobuf" {
			t.Errorf("the collector got %q", req)
		}
	default:
		t.Fatal("no span reached the collector")
	}
}

// BenchmarkJobWithoutSDK is what tracing adds to one job when no endpoint
// is set: reading the message's headers, the queue-wait and job spans
// (no-ops) and the events' header.
func BenchmarkJobWithoutSDK(b *testing.B) {
	for _, tc := range []struct {
		name string
		h    nats.Header
	}{{"no traceparent", nats.Header{}}, {"traceparent", nats.Header{"traceparent": {traceparent}}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := FromNATS(context.Background(), tc.h)
				_, wait := Tracer().Start(ctx, "queue wait")
				wait.End()
				ctx, job := Tracer().Start(ctx, "job")
				_ = NATSHeader(ctx)
				_ = TraceID(ctx)
				job.End()
			}
		})
	}
}
