package worker

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/tracing"
)

// spans are the moments of a job that become its spans.
type spans struct {
	job     trace.Span
	slot    time.Time // the generation got a slot: prompt processing starts
	first   time.Time // its first token: generation starts
	tracing bool      // the job has a trace context
}

// startTrace joins the job to the trace context its message carries (W3C
// traceparent, tracestate), records its wait in the queue and starts its
// span. From here the job's stdout lines carry trace_id and its events
// the trace context as NATS headers. It returns ctx with the job's span.
func (j *job) startTrace(ctx context.Context) context.Context {
	ctx = tracing.FromNATS(ctx, j.msg.Headers())
	tracer := tracing.Tracer()
	if meta, err := j.msg.Metadata(); err == nil && meta.NumDelivered == 1 {
		_, wait := tracer.Start(ctx, "queue wait", trace.WithTimestamp(meta.Timestamp))
		wait.End(trace.WithTimestamp(j.begin))
	}
	ctx, j.spans.job = tracer.Start(ctx, "job", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(j.begin),
		trace.WithAttributes(
			attribute.String("llmworker.job_id", j.narration.ID),
			attribute.String("llmworker.worker_id", j.w.cfg.WorkerID),
			attribute.String("llmworker.pool", j.w.cfg.Pool),
			attribute.String("gen_ai.request.model", j.w.engine.Info().Name),
			attribute.Int("llmworker.attempt", j.attempt()),
		))
	j.narrator, j.log = j.w.narrator, j.w.log.With().Str("job_id", j.narration.ID).Logger()
	if id := tracing.TraceID(ctx); id != "" {
		j.spans.tracing = true
		j.narrator = j.narrator.WithTraceID(id)
		j.log = j.log.With().Str("trace_id", id).Logger()
		j.header = tracing.NATSHeader(ctx)
	}
	return ctx
}

// traceGeneration records the generation's two phases as spans, from the
// moments its hooks saw: prompt processing (slot to first token) and
// generation (first token to the end), with their tokens.
func (j *job) traceGeneration(ctx context.Context, res engine.Result) {
	if !j.spans.job.IsRecording() || j.spans.slot.IsZero() {
		return
	}
	tracer, end := tracing.Tracer(), time.Now()
	promptEnd := end
	if !j.spans.first.IsZero() {
		promptEnd = j.spans.first
	}
	_, prompt := tracer.Start(ctx, "prompt processing", trace.WithTimestamp(j.spans.slot), trace.WithAttributes(
		attribute.Int("gen_ai.usage.input_tokens", res.PromptTokens),
		attribute.Int("llmworker.prompt_tokens_cached", res.PromptCached),
	))
	prompt.End(trace.WithTimestamp(promptEnd))
	if j.spans.first.IsZero() {
		return
	}
	took := end.Sub(j.spans.first)
	_, gen := tracer.Start(ctx, "generation", trace.WithTimestamp(j.spans.first), trace.WithAttributes(
		attribute.Int("gen_ai.usage.output_tokens", res.Tokens),
		attribute.Int64("llmworker.generation_ms", took.Milliseconds()),
		attribute.Float64("llmworker.tokens_per_second", float64(max(res.Tokens-1, 0))/max(took.Seconds(), 1e-9)),
		attribute.String("llmworker.stop_reason", res.Reason.String()),
	))
	gen.End(trace.WithTimestamp(end))
}
