package bridge

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/narrated/llmworker/internal/tracing"
)

// startSpan starts the span of an HTTP request, a child of the trace
// context its headers carry (traceparent, tracestate), if any. Its name
// waits for the route.
func startSpan(r *http.Request) (context.Context, trace.Span) {
	return tracing.Tracer().Start(tracing.FromHTTP(r.Context(), r.Header), r.Method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
}

// endSpan names the request's span after its route and ends it with its
// status code, an error for a 5xx.
func endSpan(span trace.Span, route string, code int) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.SetName(route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
}

// publishJob publishes a job to the work queue with its job id as the
// message id, and the request's trace context in the message's headers,
// under a producer span: the workers' spans of the job are its children.
func (s *Server) publishJob(ctx context.Context, subject, jobID string, data []byte) (*jetstream.PubAck, error) {
	ctx, span := tracing.Tracer().Start(ctx, "publish "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject),
			attribute.String("llmworker.job_id", jobID)))
	defer span.End()
	msg := &nats.Msg{Subject: subject, Data: data, Header: tracing.NATSHeader(ctx)}
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(jobID))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return ack, err
}
