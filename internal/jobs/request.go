package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits and defaults of an execute request. subjects.md lists them.
const (
	MaxJobIDLen       = 128
	MaxPromptChars    = 32768
	MaxStopSequences  = 4
	MaxStopBytes      = 100
	MaxCorrelationLen = 128
	MaxTimeout        = time.Hour
	// MaxRequestBytes bounds an encoded request: the longest prompt in
	// 4-byte characters, with room for every other field.
	MaxRequestBytes = 4*MaxPromptChars + 16<<10

	DefaultMaxTokens         = 128
	DefaultTemperature       = 0.8
	DefaultTopK              = 40
	DefaultTopP              = 0.95
	DefaultMinP              = 0.05
	DefaultRepetitionPenalty = 1.0
	DefaultTimeout           = 5 * time.Minute
)

// Request is an execute request as it travels on jobs.execute. Optional
// numbers are pointers so that an explicit 0 (greedy temperature, say) stays
// apart from "not given"; Params resolves the defaults.
type Request struct {
	JobID  string `json:"job_id"`
	Prompt string `json:"prompt,omitempty"`
	// Messages, instead of Prompt, is a chat: the worker renders it into
	// a prompt through its model's chat template.
	Messages []Message `json:"messages,omitempty"`
	// JSONSchema constrains the output to JSON that matches it.
	JSONSchema        json.RawMessage `json:"json_schema,omitempty"`
	MaxTokens         *int            `json:"max_tokens,omitempty"`
	Temperature       *float64        `json:"temperature,omitempty"`
	TopK              *int            `json:"top_k,omitempty"`
	TopP              *float64        `json:"top_p,omitempty"`
	MinP              *float64        `json:"min_p,omitempty"`
	RepetitionPenalty *float64        `json:"repetition_penalty,omitempty"`
	Seed              *uint32         `json:"seed,omitempty"`
	Stop              []string        `json:"stop,omitempty"`
	TimeoutMS         *int            `json:"timeout_ms,omitempty"`
	CorrelationID     string          `json:"correlation_id,omitempty"`
}

// Params are a request's generation settings with every default applied.
type Params struct {
	MaxTokens         int
	Temperature       float64
	TopK              int
	TopP              float64
	MinP              float64
	RepetitionPenalty float64
	// Seed is nil when the request left the choice to the worker.
	Seed    *uint32
	Stop    []string
	Timeout time.Duration
}

// Params resolves the request's defaults.
func (r *Request) Params() Params {
	p := Params{
		MaxTokens:         or(r.MaxTokens, DefaultMaxTokens),
		Temperature:       or(r.Temperature, DefaultTemperature),
		TopK:              or(r.TopK, DefaultTopK),
		TopP:              or(r.TopP, DefaultTopP),
		MinP:              or(r.MinP, DefaultMinP),
		RepetitionPenalty: or(r.RepetitionPenalty, DefaultRepetitionPenalty),
		Seed:              r.Seed,
		Stop:              r.Stop,
		Timeout:           DefaultTimeout,
	}
	if r.TimeoutMS != nil {
		p.Timeout = time.Duration(*r.TimeoutMS) * time.Millisecond
	}
	return p
}

func or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// DecodeRequest decodes and validates an execute request. Its error is
// always an *Error with code INVALID_REQUEST that names the field at fault.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if err := DecodeStrict(data, &r); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// Validate checks every rule that needs no model. The context size is
// checked by the worker that holds the model (CheckContext).
func (r *Request) Validate() error {
	if r.JobID == "" {
		return invalid("job_id", "is required")
	}
	return r.ValidateOptions()
}

// ValidateOptions checks every rule but the job id's presence, for a caller
// (the bridge) that assigns the id itself.
func (r *Request) ValidateOptions() error {
	if r.JobID != "" {
		if err := CheckSubjectToken("job_id", r.JobID); err != nil {
			return err
		}
	}
	if err := r.validateInput(); err != nil {
		return err
	}
	checks := []struct {
		field string
		ok    bool
		rule  string
	}{
		{"max_tokens", r.MaxTokens == nil || *r.MaxTokens >= 1, "must be at least 1"},
		{"temperature", inRange(r.Temperature, 0, 2), "must be from 0 to 2"},
		{"top_k", r.TopK == nil || *r.TopK >= 0, "must be 0 (off) or more"},
		{"top_p", inRange(r.TopP, 0, 1), "must be from 0 to 1"},
		{"min_p", inRange(r.MinP, 0, 1), "must be from 0 to 1"},
		{"repetition_penalty", inRange(r.RepetitionPenalty, 0, 2), "must be from 0 to 2"},
		{"timeout_ms", r.TimeoutMS == nil || *r.TimeoutMS >= 1 && *r.TimeoutMS <= int(MaxTimeout/time.Millisecond),
			fmt.Sprintf("must be from 1 to %d", MaxTimeout/time.Millisecond)},
		{"correlation_id", len(r.CorrelationID) <= MaxCorrelationLen && utf8.ValidString(r.CorrelationID),
			fmt.Sprintf("must be at most %d bytes of UTF-8", MaxCorrelationLen)},
	}
	for _, c := range checks {
		if !c.ok {
			return invalid(c.field, "%s", c.rule)
		}
	}
	if len(r.Stop) > MaxStopSequences {
		return invalid("stop", "has %d strings; the limit is %d", len(r.Stop), MaxStopSequences)
	}
	for i, s := range r.Stop {
		if len(s) == 0 || len(s) > MaxStopBytes || !utf8.ValidString(s) {
			return invalid("stop", "string %d must be 1 to %d bytes of UTF-8", i, MaxStopBytes)
		}
	}
	return nil
}

func inRange(v *float64, lo, hi float64) bool {
	return v == nil || *v >= lo && *v <= hi // NaN fails both
}

// CheckContext checks a tokenized prompt against the context of the model
// that will run it: the prompt alone must leave room for one token
// (INVALID_REQUEST), and prompt plus max_tokens must fit (CONTEXT_OVERFLOW).
func (r *Request) CheckContext(promptTokens, contextSize int) error {
	maxTokens := r.Params().MaxTokens
	switch {
	case maxTokens > contextSize:
		return invalid("max_tokens", "is %d; this model's context holds %d tokens", maxTokens, contextSize)
	case promptTokens >= contextSize:
		return invalid("prompt", "is %d tokens; this model's context holds %d, with room for at least one more", promptTokens, contextSize)
	case promptTokens+maxTokens > contextSize:
		return &Error{Code: ContextOverflow, Field: "max_tokens", Message: fmt.Sprintf(
			"prompt (%d tokens) plus max_tokens (%d) exceeds the context (%d tokens); ask for at most %d",
			promptTokens, maxTokens, contextSize, contextSize-promptTokens)}
	}
	return nil
}

// ProbeJobID reads the top-level job_id of a request that may be broken
// further on (cut short, unknown fields, wrong types), so that the error
// can still reach the job's subject. It matches keys as DecodeStrict does
// (exactly, the last one winning), and returns "" when there is no valid
// id.
func ProbeJobID(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	id := ""
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			break
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			break
		}
		if key == "job_id" {
			id = ""
			json.Unmarshal(value, &id)
		}
	}
	if !ValidSubjectToken(id) {
		return ""
	}
	return id
}
