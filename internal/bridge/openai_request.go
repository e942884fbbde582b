package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/openai"
)

// completion is an OpenAI request turned into a job, and what its answer
// needs to know.
type completion struct {
	req     jobs.Request
	model   string
	chat    bool
	stream  bool
	usage   bool // stream_options.include_usage
	created int64
	// narrate adds the job's narration to the stream (X-Narration: true).
	narrate bool
}

// id is the completion's id: the job id with OpenAI's prefix.
func (c *completion) id() string {
	if c.chat {
		return "chatcmpl-" + c.req.JobID
	}
	return "cmpl-" + c.req.JobID
}

// jsonObjectSchema is what response_format json_object asks for.
var jsonObjectSchema = json.RawMessage(`{"type":"object"}`)

// chatCompletion decodes and maps a chat request.
func chatCompletion(body []byte) (*completion, *openai.Error) {
	var cr openai.ChatRequest
	if err := jobs.DecodeStrict(body, &cr); err != nil {
		return nil, fromJobError(err, true)
	}
	c := &completion{chat: true}
	if err := c.sampling(cr.Model, &cr.Sampling); err != nil {
		return nil, err
	}
	if cr.MaxCompletionTokens != nil {
		c.req.MaxTokens = cr.MaxCompletionTokens
	}
	switch {
	case cr.Logprobs != nil && *cr.Logprobs:
		return nil, openai.Unsupported("logprobs", "logprobs are not offered")
	case cr.TopLogprobs != nil:
		return nil, openai.Unsupported("top_logprobs", "logprobs are not offered")
	case given(cr.Tools) && string(cr.Tools) != "[]":
		return nil, openai.Unsupported("tools", "tools (function calling) are not offered")
	case given(cr.ToolChoice) && string(cr.ToolChoice) != `"none"`:
		return nil, openai.Unsupported("tool_choice", "tools (function calling) are not offered")
	case given(cr.Functions):
		return nil, openai.Unsupported("functions", "functions (function calling) are not offered")
	case given(cr.FunctionCall) && string(cr.FunctionCall) != `"none"`:
		return nil, openai.Unsupported("function_call", "functions (function calling) are not offered")
	}
	msgs, err := messages(cr.Messages)
	if err != nil {
		return nil, err
	}
	c.req.Messages = msgs
	if c.req.JSONSchema, err = responseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	return c, c.validate()
}

// textCompletion decodes and maps a completion request.
func textCompletion(body []byte) (*completion, *openai.Error) {
	var cr openai.CompletionRequest
	if err := jobs.DecodeStrict(body, &cr); err != nil {
		return nil, fromJobError(err, false)
	}
	c := &completion{}
	if err := c.sampling(cr.Model, &cr.Sampling); err != nil {
		return nil, err
	}
	switch {
	case cr.Logprobs != nil && *cr.Logprobs != 0:
		return nil, openai.Unsupported("logprobs", "logprobs are not offered")
	case cr.Echo != nil && *cr.Echo:
		return nil, openai.Unsupported("echo", "echo is not offered")
	case given(cr.Suffix) && string(cr.Suffix) != `""`:
		return nil, openai.Unsupported("suffix", "suffix (fill in the middle) is not offered")
	case cr.BestOf != nil && *cr.BestOf != 1:
		return nil, openai.Unsupported("best_of", "only best_of 1 is offered")
	}
	prompt, err := promptText(cr.Prompt)
	if err != nil {
		return nil, err
	}
	c.req.Prompt = prompt
	return c, c.validate()
}

// sampling maps the parameters both endpoints share.
func (c *completion) sampling(model string, s *openai.Sampling) *openai.Error {
	if model == "" {
		return openai.BadParam("model", "model is required: GET /v1/models lists the models served")
	}
	c.model, c.stream, c.created = model, s.Stream, time.Now().Unix()
	switch {
	case s.N != nil && *s.N != 1:
		return openai.Unsupported("n", "only n=1 is offered: one choice per request")
	case s.PresencePenalty != nil && *s.PresencePenalty != 0:
		return openai.Unsupported("presence_penalty", "presence_penalty is not offered (llama.cpp's penalties are not OpenAI's); use repeat_penalty")
	case s.FrequencyPenalty != nil && *s.FrequencyPenalty != 0:
		return openai.Unsupported("frequency_penalty", "frequency_penalty is not offered (llama.cpp's penalties are not OpenAI's); use repeat_penalty")
	case len(s.LogitBias) > 0:
		return openai.Unsupported("logit_bias", "logit_bias is not offered")
	case s.StreamOptions != nil && !s.Stream:
		return openai.BadParam("stream_options", "stream_options is only allowed when stream is true")
	case s.Seed != nil && (*s.Seed < 0 || *s.Seed > math.MaxUint32):
		return openai.BadParam("seed", "seed must be from 0 to 4294967295 (llama.cpp's seed is 32-bit)")
	}
	c.usage = s.StreamOptions != nil && s.StreamOptions.IncludeUsage
	c.req.JobID = uuid.NewString()
	c.req.MaxTokens = s.MaxTokens
	c.req.Temperature, c.req.TopP = s.Temperature, s.TopP
	c.req.TopK, c.req.MinP, c.req.RepetitionPenalty = s.TopK, s.MinP, s.RepeatPenalty
	// A seed always, so that a job another worker takes over (its first
	// died) generates the same text again, and a stream goes on where it
	// was rather than telling a second story.
	seed := rand.Uint32()
	if s.Seed != nil {
		seed = uint32(*s.Seed)
	}
	c.req.Seed = &seed
	stop, err := stops(s.Stop)
	c.req.Stop = stop
	return err
}

// validate checks the job with the workers' own rules, naming OpenAI's
// parameters.
func (c *completion) validate() *openai.Error {
	if err := c.req.Validate(); err != nil {
		return fromJobError(err, c.chat)
	}
	return nil
}

func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// stops reads stop: a string or an array of strings.
func stops(raw json.RawMessage) ([]string, *openai.Error) {
	if !given(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, nil
	}
	return nil, openai.BadParam("stop", "stop must be a string or an array of strings")
}

// promptText reads a completion's prompt: a string, or an array of one.
func promptText(raw json.RawMessage) (string, *openai.Error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		if len(many) == 1 {
			return many[0], nil
		}
		return "", openai.Unsupported("prompt", fmt.Sprintf("one prompt per request is offered, not %d", len(many)))
	}
	if !given(raw) {
		return "", openai.BadParam("prompt", "prompt is required")
	}
	return "", openai.Unsupported("prompt", "prompt must be a string (token arrays are not offered)")
}

// messages maps a chat's messages: developer is system, and a content
// array is the concatenation of its text parts.
func messages(in []openai.ChatMessage) ([]jobs.Message, *openai.Error) {
	if len(in) == 0 {
		return nil, openai.BadParam("messages", "messages must hold at least one message")
	}
	out := make([]jobs.Message, len(in))
	for i, m := range in {
		role := m.Role
		switch role {
		case "developer":
			role = jobs.RoleSystem
		case jobs.RoleSystem, jobs.RoleUser, jobs.RoleAssistant:
		case "tool", "function":
			return nil, openai.Unsupported("messages", fmt.Sprintf("messages[%d]: role %s is not offered: tools are not", i, role))
		default:
			return nil, openai.BadParam("messages", fmt.Sprintf("messages[%d]: role must be system, developer, user or assistant, not %q", i, role))
		}
		if given(m.ToolCalls) && string(m.ToolCalls) != "[]" {
			return nil, openai.Unsupported("messages", fmt.Sprintf("messages[%d]: tool_calls are not offered", i))
		}
		content, err := messageContent(i, m.Content)
		if err != nil {
			return nil, err
		}
		out[i] = jobs.Message{Role: role, Content: content}
	}
	return out, nil
}

func messageContent(i int, raw json.RawMessage) (string, *openai.Error) {
	if !given(raw) {
		return "", nil
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return text, nil
	}
	var parts []openai.ContentPart
	if json.Unmarshal(raw, &parts) != nil {
		return "", openai.BadParam("messages", fmt.Sprintf("messages[%d].content must be a string or an array of content parts", i))
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type != "text" {
			return "", openai.Unsupported("messages", fmt.Sprintf("messages[%d].content: only text parts are offered, not %q", i, p.Type))
		}
		texts = append(texts, p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// responseFormat maps response_format onto the job's json_schema.
func responseFormat(f *openai.ResponseFormat) (json.RawMessage, *openai.Error) {
	if f == nil {
		return nil, nil
	}
	switch f.Type {
	case "text":
		return nil, nil
	case "json_object":
		return jsonObjectSchema, nil
	case "json_schema":
		if f.JSONSchema == nil || !given(f.JSONSchema.Schema) {
			return nil, openai.BadParam("response_format", "response_format.json_schema.schema is required")
		}
		return f.JSONSchema.Schema, nil
	}
	return nil, openai.BadParam("response_format", fmt.Sprintf("response_format.type must be text, json_object or json_schema, not %q", f.Type))
}

// fromJobError speaks a contract error in OpenAI's terms, naming the
// parameter as the OpenAI API calls it.
func fromJobError(err error, chat bool) *openai.Error {
	var e *jobs.Error
	if !errors.As(err, &e) {
		return openai.NewError(500, openai.TypeServer, "", "", err.Error())
	}
	param := map[string]string{
		"repetition_penalty": "repeat_penalty",
		"json_schema":        "response_format",
		"job_id":             "",
	}[e.Field]
	if param == "" && e.Field != "job_id" {
		param = e.Field
	}
	if chat && param == "prompt" {
		param = "messages"
	}
	msg := e.Message
	if param != "" {
		msg = param + ": " + msg
	}
	switch e.Code {
	case jobs.ContextOverflow:
		return openai.NewError(400, openai.TypeInvalidRequest, "context_length_exceeded", param, msg)
	case jobs.InferenceFailed:
		return openai.NewError(500, openai.TypeServer, "inference_failed", "", msg)
	case jobs.RetriesExhausted:
		return openai.NewError(500, openai.TypeServer, "retries_exhausted", "", msg)
	}
	return openai.BadParam(param, msg)
}
