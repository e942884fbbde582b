package narration

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/jobs"
)

func TestCuteLines(t *testing.T) {
	j := Job{ID: "j1", CorrelationID: "c1"}
	tests := []struct {
		n      jobs.Narration
		action string
		cute   string
	}{
		{j.Validated(), ActionRequestValidated, "✅ Request validated"},
		{j.InferenceStart("m", 50), ActionInferenceStart, "🚀 Starting inference (50 tokens)"},
		{j.Tokenized(7), ActionTokenize, "🍰 Tokenized prompt (7 tokens)"},
		{j.CacheReset(2, 0), ActionCacheReset, "🧹 Cleared KV cache (slot 2)"},
		{j.CacheReset(1, 6), ActionCacheReset, "🧹 Cleared KV cache (slot 1, 6 prompt tokens reused)"},
		{j.TokenProgress(10), ActionTokenProgress, "🎯 Generated 10 tokens"},
		{j.InferenceComplete(7, 42, 250*time.Millisecond, jobs.StopEOS), ActionInferenceComplete, "🎉 Complete! (42 tokens in 250ms)"},
		{j.InferenceComplete(7, 3, 1500*time.Millisecond, jobs.StopCancelled), ActionInferenceComplete, "🛑 Cancelled (3 tokens in 1.5s)"},
		{j.InferenceComplete(7, 3, 30*time.Millisecond, jobs.StopTimeout), ActionInferenceComplete, "⏰ Timed out (3 tokens in 30ms)"},
		{j.ValidationFailed(&jobs.Error{Code: jobs.InvalidRequest, Field: "top_p", Message: "must be from 0 to 1"}),
			ActionValidationFailed, "❌ Request rejected: top_p must be from 0 to 1"},
		{j.ValidationFailed(&jobs.Error{Code: jobs.InvalidRequest, Field: "evil", Message: `unknown field "evil"`}),
			ActionValidationFailed, `❌ Request rejected: unknown field "evil"`},
		{j.InferenceFailed(jobs.InferenceFailed, "decode failed"), ActionInferenceFailed, "💥 Inference failed: decode failed"},
		{Ready("w1", "stories260K", "", 4), ActionReady, "🟢 Ready: stories260K, pool default, 4 slots"},
		{ModelLoadComplete("/m.gguf", "m", 1185376, 25*time.Millisecond), ActionModelLoadComplete, "✅ Model loaded: m (1.1 MiB in 25ms)"},
		{NATSConnectFailed("nats://x:1", errors.New("refused"), false), ActionNATSConnectFailed, "🚫 Cannot connect to NATS at nats://x:1: refused"},
	}
	for _, tt := range tests {
		if tt.n.Action != tt.action || tt.n.Cute != tt.cute || tt.n.Human == "" {
			t.Errorf("%s: cute %q human %q; want %q", tt.action, tt.n.Cute, tt.n.Human, tt.cute)
		}
		perRequest := slices.Contains(PerRequest, tt.n.Action)
		if perRequest != (tt.n.JobID == "j1" && tt.n.CorrelationID == "c1") {
			t.Errorf("%s: per-request %v but job_id %q correlation_id %q", tt.action, perRequest, tt.n.JobID, tt.n.CorrelationID)
		}
	}
}

type recorder []jobs.Narration

func (r *recorder) Narrate(n *jobs.Narration) { *r = append(*r, *n) }

func TestTellWritesStdoutThenSinks(t *testing.T) {
	var out bytes.Buffer
	teller := New(zerolog.New(&out).With().Str("worker_id", "w1").Logger(), "w1")
	var a, b recorder
	teller.Tell(Job{ID: "j1", CorrelationID: "c1"}.Tokenized(7), &a, &b)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"worker_id": "w1", "job_id": "j1", "correlation_id": "c1", "action": "tokenize",
		"actor": "engine", "tokens_in": 7.0, "message": "🍰 Tokenized prompt (7 tokens)", "level": "info"} {
		if line[k] != v {
			t.Errorf("stdout %s = %v, want %v", k, line[k], v)
		}
	}
	if len(a) != 1 || len(b) != 1 || a[0].WorkerID != "w1" || a[0].Type != jobs.TypeNarration || a[0].TS.IsZero() {
		t.Errorf("sinks got %+v and %+v", a, b)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1185376: "1.1 MiB", 4 << 30: "4.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
