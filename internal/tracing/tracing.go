// Package tracing carries a job's W3C trace context (traceparent,
// tracestate) across every hop — HTTP, the queue, a job's events — and
// sets up the OpenTelemetry SDK that exports spans when
// OTEL_EXPORTER_OTLP_ENDPOINT is set. Unset, no span is recorded or
// exported, but a trace context that arrives is still carried, so the
// trace_id of stdout lines and event headers still joins them up.
//
// It knows OpenTelemetry, HTTP and NATS headers; nothing about jobs.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads and writes traceparent and tracestate.
var propagator = propagation.TraceContext{}

// Tracer is the project's tracer of the global provider: the SDK's once
// Setup found an endpoint (or a test set one), a no-op otherwise.
func Tracer() trace.Tracer {
	return otel.Tracer("github.com/narrated/llmworker")
}

// Enabled reports whether OTEL_EXPORTER_OTLP_ENDPOINT (or its traces
// variant) asks for spans to be exported.
func Enabled(getenv func(string) string) bool {
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the SDK as the global tracer provider, exporting spans
// over OTLP/HTTP to the endpoint of the standard OTEL_EXPORTER_OTLP_*
// variables, when Enabled. The returned func flushes and stops it; with
// no endpoint it does nothing. service names the binary
// (OTEL_SERVICE_NAME overrides it).
func Setup(ctx context.Context, service, version string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagator)
	if !Enabled(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// The environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) has
	// the last word.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.version", version)),
		resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// FromHTTP returns ctx with the trace context of an HTTP request's
// headers, if it has one.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// ToHTTP writes ctx's trace context into HTTP headers (a response's, so
// the caller learns its trace).
func ToHTTP(ctx context.Context, h http.Header) {
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// FromNATS returns ctx with the trace context of a NATS message's headers,
// whatever the case of their names.
func FromNATS(ctx context.Context, h nats.Header) context.Context {
	return propagator.Extract(ctx, natsCarrier(h))
}

// NATSHeader is ctx's trace context as NATS headers (traceparent,
// tracestate), nil when ctx carries none: a message without a trace goes
// out as before.
func NATSHeader(ctx context.Context) nats.Header {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	h := nats.Header{}
	propagator.Inject(ctx, natsCarrier(h))
	return h
}

// TraceID is ctx's trace id in hex, empty when it has none.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// natsCarrier adapts NATS headers, whose names keep their case, to the
// propagator: W3C names are lower case, but a sender may capitalize them.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
