package narration

import (
	"fmt"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
)

// The action names of narration events. Per-request ones go to stdout and
// the job's subject; lifecycle ones to stdout and worker.lifecycle, never to
// a job's subject.
const (
	ActionValidationFailed  = "validation_failed"
	ActionRequestValidated  = "request_validated"
	ActionInferenceStart    = "inference_start"
	ActionTokenize          = "tokenize"
	ActionCacheReset        = "cache_reset"
	ActionTokenProgress     = "token_progress"
	ActionInferenceComplete = "inference_complete"
	ActionInferenceFailed   = "inference_failed"
	ActionHandedBack        = "handed_back"

	ActionStartup           = "startup"
	ActionDeviceInit        = "device_init"
	ActionModelLoadStart    = "model_load_start"
	ActionModelLoadProgress = "model_load_progress"
	ActionModelLoadComplete = "model_load_complete"
	ActionReady             = "ready"
	ActionNATSConnect       = "nats_connect"
	ActionNATSConnectFailed = "nats_connect_failed"
	ActionSubscribe         = "subscribe"
	ActionShutdown          = "shutdown"
	ActionJobLost           = "job_lost"
)

// PerRequest lists the per-request actions, in the order they come.
var PerRequest = []string{
	ActionValidationFailed, ActionRequestValidated, ActionInferenceStart, ActionTokenize,
	ActionCacheReset, ActionTokenProgress, ActionInferenceComplete, ActionInferenceFailed,
	ActionHandedBack,
}

// Lifecycle lists the lifecycle actions.
var Lifecycle = []string{
	ActionStartup, ActionDeviceInit, ActionModelLoadStart, ActionModelLoadProgress,
	ActionModelLoadComplete, ActionReady, ActionNATSConnect, ActionNATSConnectFailed,
	ActionSubscribe, ActionShutdown, ActionJobLost,
}

// Job narrates one job's events: it fills the job and correlation ids.
type Job struct {
	ID            string
	CorrelationID string
}

func (j Job) event(actor, action, human, cute string) jobs.Narration {
	n := jobs.Narration{Actor: actor, Action: action, Target: j.ID, Human: human, Cute: cute, CorrelationID: j.CorrelationID}
	n.JobID = j.ID
	return n
}

// ValidationFailed: the request broke the contract.
func (j Job) ValidationFailed(err *jobs.Error) jobs.Narration {
	what := err.Sentence()
	n := j.event("worker", ActionValidationFailed,
		"Rejected the request: "+what+".",
		"❌ Request rejected: "+what)
	n.ErrorKind = string(err.Code)
	return n
}

// Validated: the request is well formed.
func (j Job) Validated() jobs.Narration {
	return j.event("worker", ActionRequestValidated, "The request is valid.", "✅ Request validated")
}

// InferenceStart: generation of up to maxTokens begins.
func (j Job) InferenceStart(model string, maxTokens int) jobs.Narration {
	n := j.event("engine", ActionInferenceStart,
		fmt.Sprintf("Starting inference on %s for up to %d tokens.", model, maxTokens),
		fmt.Sprintf("🚀 Starting inference (%d tokens)", maxTokens))
	n.Model = model
	return n
}

// Tokenized: the prompt is tokens tokens long.
func (j Job) Tokenized(tokens int) jobs.Narration {
	n := j.event("engine", ActionTokenize,
		fmt.Sprintf("Tokenized the prompt into %d tokens.", tokens),
		fmt.Sprintf("🍰 Tokenized prompt (%d tokens)", tokens))
	n.TokensIn = &tokens
	return n
}

// CacheReset: the slot's KV cache held an earlier job, which was cleared
// but for the reused tokens that the prompt repeats.
func (j Job) CacheReset(slot, reused int) jobs.Narration {
	if reused == 0 {
		return j.event("engine", ActionCacheReset,
			fmt.Sprintf("Cleared slot %d's KV cache of the previous job.", slot),
			fmt.Sprintf("🧹 Cleared KV cache (slot %d)", slot))
	}
	n := j.event("engine", ActionCacheReset,
		fmt.Sprintf("Cleared slot %d's KV cache of the previous job but for the %d prompt tokens it shares, which are reused.", slot, reused),
		fmt.Sprintf("🧹 Cleared KV cache (slot %d, %d prompt tokens reused)", slot, reused))
	n.TokensIn = &reused
	return n
}

// TokenProgress: tokens tokens generated so far.
func (j Job) TokenProgress(tokens int) jobs.Narration {
	n := j.event("engine", ActionTokenProgress,
		fmt.Sprintf("Generated %d tokens so far.", tokens),
		fmt.Sprintf("🎯 Generated %d tokens", tokens))
	n.TokensOut = &tokens
	return n
}

// InferenceComplete: generation ended for reason after tokens tokens.
func (j Job) InferenceComplete(tokensIn, tokensOut int, d time.Duration, reason jobs.StopReason) jobs.Narration {
	ms := d.Milliseconds()
	took := fmt.Sprintf("%d tokens in %s", tokensOut, round(d))
	var human, cute string
	switch reason {
	case jobs.StopCancelled:
		human, cute = "Cancelled after "+took+".", "🛑 Cancelled ("+took+")"
	case jobs.StopTimeout:
		human, cute = "Timed out after "+took+".", "⏰ Timed out ("+took+")"
	default:
		human, cute = fmt.Sprintf("Finished: %s (%s).", took, reason), "🎉 Complete! ("+took+")"
	}
	n := j.event("engine", ActionInferenceComplete, human, cute)
	n.TokensIn, n.TokensOut, n.DurationMS = &tokensIn, &tokensOut, &ms
	return n
}

// InferenceFailed: generation failed.
func (j Job) InferenceFailed(kind jobs.Code, reason string) jobs.Narration {
	n := j.event("engine", ActionInferenceFailed,
		"Inference failed: "+reason+".",
		"💥 Inference failed: "+reason)
	n.ErrorKind = string(kind)
	return n
}

// HandedBack: the worker shut down under the job and gave it back to the
// queue; another worker runs it from the start. It uses up no attempt.
func (j Job) HandedBack() jobs.Narration {
	return j.event("worker", ActionHandedBack,
		"The worker is shutting down and handed the job back to the queue; another worker will run it from the start.",
		"🔁 Handed back to the queue (worker shutting down)")
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
