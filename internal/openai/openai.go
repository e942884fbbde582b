// Package openai owns the OpenAI API's wire types as the bridge speaks
// them: chat and text completion requests, their responses and stream
// chunks, the model list and the error body. It follows the OpenAI API
// reference, with llama.cpp's sampling extensions (top_k, min_p,
// repeat_penalty) as llama.cpp's server and Ollama accept them.
//
// It knows nothing about NATS or jobs: the bridge maps these onto jobs.
package openai

import "encoding/json"

// ChatRequest is the body of POST /v1/chat/completions. Fields that can
// take several JSON types stay raw, so that the bridge can name the
// parameter when one is wrong.
type ChatRequest struct {
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages"`
	Sampling
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	ResponseFormat      *ResponseFormat `json:"response_format"`

	// Refused unless they ask for nothing this bridge cannot do.
	Logprobs          *bool           `json:"logprobs"`
	TopLogprobs       *int            `json:"top_logprobs"`
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Functions         json.RawMessage `json:"functions"`
	FunctionCall      json.RawMessage `json:"function_call"`
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model string `json:"model"`
	// Prompt is a string, or an array holding one string.
	Prompt json.RawMessage `json:"prompt"`
	Sampling
	// Refused unless they ask for nothing this bridge cannot do.
	Logprobs *int            `json:"logprobs"`
	Echo     *bool           `json:"echo"`
	Suffix   json.RawMessage `json:"suffix"`
	BestOf   *int            `json:"best_of"`
}

// Sampling are the parameters both endpoints share.
type Sampling struct {
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Seed          *int64          `json:"seed"`
	Stop          json.RawMessage `json:"stop"`
	Stream        bool            `json:"stream"`
	StreamOptions *StreamOptions  `json:"stream_options"`
	N             *int            `json:"n"`
	User          string          `json:"user"`
	// PresencePenalty and FrequencyPenalty are refused unless 0.
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`

	// llama.cpp's extensions.
	TopK          *int     `json:"top_k"`
	MinP          *float64 `json:"min_p"`
	RepeatPenalty *float64 `json:"repeat_penalty"`
}

// ChatMessage is one message of a chat request. Content is a string, or an
// array of content parts of which only text parts are served.
type ChatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	Refusal    json.RawMessage `json:"refusal"`
}

// ContentPart is one part of a message's content array.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// StreamOptions tune a stream.
type StreamOptions struct {
	// IncludeUsage adds a last chunk, with no choices, that carries usage.
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat asks for text, any JSON object, or JSON that matches a
// schema.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema"`
}

// JSONSchema is response_format's json_schema.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict"`
}

// The objects of responses and chunks.
const (
	ObjectChatCompletion = "chat.completion"
	ObjectChatChunk      = "chat.completion.chunk"
	ObjectTextCompletion = "text_completion"
	ObjectModel          = "model"
	ObjectList           = "list"
)

// The finish reasons of a choice.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// Usage counts a completion's tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ChatCompletion is the answer to a chat request without stream.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage"`
}

// ChatChoice is the one choice of a ChatCompletion.
type ChatChoice struct {
	Index        int             `json:"index"`
	Message      AssistantReply  `json:"message"`
	FinishReason string          `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

// AssistantReply is the message a chat completion generated.
type AssistantReply struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

// ChatChunk is one data line of a chat stream.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
	// Narration is this bridge's opt-in extension: one narration event
	// of the job, in a chunk without choices.
	Narration json.RawMessage `json:"narration,omitempty"`
}

// ChunkChoice is the one choice of a ChatChunk.
type ChunkChoice struct {
	Index        int             `json:"index"`
	Delta        Delta           `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

// Delta is what a chunk adds to the assistant's message.
type Delta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// Completion is a text completion, or one chunk of its stream.
type Completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
	// Narration: as in ChatChunk.
	Narration json.RawMessage `json:"narration,omitempty"`
}

// CompletionChoice is the one choice of a Completion. FinishReason is
// null in a stream's chunks but the last.
type CompletionChoice struct {
	Index        int             `json:"index"`
	Text         string          `json:"text"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}
