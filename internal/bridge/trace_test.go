package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

const (
	traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID = "00f067aa0ba902b7"
	traceparent  = "00-" + traceID + "-" + parentSpanID + "-01"
)

// A traceparent sent to the bridge comes back on the answer, rides the
// queue to the worker, and is on every event's NATS headers and every
// stdout line of the job — with no tracing SDK set up.
func TestTraceparentReachesTheWorker(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	w := testutil.StartWorker(t, h.natsURL)
	resp, body := h.do(http.MethodPost, "/v1/jobs", `{"job_id":"traced","prompt":"Once upon a time","max_tokens":12}`,
		"Traceparent", traceparent, "Tracestate", "vendor=42")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(resp.Header.Get("Traceparent"), traceID) {
		t.Fatalf("%s %s, traceparent %q; want 202 in trace %s", resp.Status, body, resp.Header.Get("Traceparent"), traceID)
	}

	headers := eventHeaders(t, h.js, "traced")
	if len(headers) < 5 {
		t.Fatalf("%d events", len(headers))
	}
	for i, hdr := range headers {
		if !strings.Contains(hdr.Get("traceparent"), traceID) || hdr.Get("tracestate") != "vendor=42" {
			t.Errorf("event %d headers %v; want traceparent in trace %s and tracestate vendor=42", i+1, hdr, traceID)
		}
	}
	w.Stop(t)
	lines := 0
	for sc := bufio.NewScanner(bytes.NewReader(w.Stdout.Bytes())); sc.Scan(); {
		var line struct {
			JobID   string `json:"job_id"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.JobID != "traced" {
			continue
		}
		lines++
		if line.TraceID != traceID {
			t.Errorf("stdout line without the trace: %s", sc.Bytes())
		}
	}
	if lines < 4 {
		t.Errorf("%d stdout lines of the job", lines)
	}
}

// eventHeaders reads a job's events, to its terminal one, with their NATS
// headers.
func eventHeaders(t *testing.T, js jetstream.JetStream, jobID string) []nats.Header {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{jobs.EventsSubject(jobID)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []nats.Header
	for {
		msg, err := c.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		out = append(out, msg.Headers())
		var head jobs.Header
		if json.Unmarshal(msg.Data(), &head) == nil && head.Type.Terminal() {
			return out
		}
	}
}

// One job's spans, recorded by the SDK's in-memory exporter, form one tree
// under the caller's span: the HTTP request, the publish, the wait in the
// queue and the job, which holds prompt processing and generation.
func TestSpanTree(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(previous); tp.Shutdown(context.Background()) })

	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	req, err := http.NewRequest(http.MethodPost, h.URL+"/v1/jobs", strings.NewReader(`{"job_id":"spans","prompt":"Once upon a time","max_tokens":9}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if end, _ := lastEnd(t, newSSEReader(resp.Body)); end.TokensOut != 9 {
		t.Fatalf("end %+v", end)
	}

	// The worker ends its job's span once the job is settled with the
	// queue, a moment after the end event: wait for it.
	spans := map[string]tracetest.SpanStub{}
	for deadline := time.Now().Add(10 * time.Second); spans["job"].Name == "" || spans["POST /v1/jobs"].Name == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("spans %v", names(exporter.GetSpans()))
		}
		time.Sleep(5 * time.Millisecond) // the exporter has nothing to wait on
		for _, s := range exporter.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID {
				spans[s.Name] = s
			}
		}
	}
	parent := func(child, want string) {
		t.Helper()
		c, p := spans[child], spans[want]
		if c.Name == "" || p.Name == "" || c.Parent.SpanID() != p.SpanContext.SpanID() {
			t.Errorf("%s is not a child of %s: %v", child, want, names(exporter.GetSpans()))
		}
	}
	if http := spans["POST /v1/jobs"]; http.Parent.SpanID().String() != parentSpanID || http.SpanKind != trace.SpanKindServer {
		t.Errorf("HTTP span's parent %s, kind %s; want the caller's %s, server", http.Parent.SpanID(), http.SpanKind, parentSpanID)
	}
	parent("publish jobs.execute", "POST /v1/jobs")
	parent("queue wait", "publish jobs.execute")
	parent("job", "publish jobs.execute")
	parent("prompt processing", "job")
	parent("generation", "job")
	if v := attr(spans["job"], "llmworker.outcome"); v != "max_tokens" {
		t.Errorf("job's outcome %v; want max_tokens", v)
	}
	gen := spans["generation"]
	if v := attr(gen, "gen_ai.usage.output_tokens"); v != int64(9) {
		t.Errorf("generation's output tokens %v; want 9", v)
	}
	if v := attr(spans["prompt processing"], "gen_ai.usage.input_tokens"); v == nil || v.(int64) < 1 {
		t.Errorf("prompt processing's input tokens %v", v)
	}
	if !gen.StartTime.Before(gen.EndTime) || gen.StartTime.Before(spans["prompt processing"].EndTime) {
		t.Errorf("generation %v–%v does not follow prompt processing", gen.StartTime, gen.EndTime)
	}
}

func attr(s tracetest.SpanStub, key string) any {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.AsInterface()
		}
	}
	return nil
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
