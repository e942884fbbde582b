package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// The tests in this file drive the bridge with the official OpenAI Go
// client, unmodified, against the real worker on the shared model.

const testModel = "stories260K"

func openAIClient(h *harness, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(h.URL + "/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
	}, opts...)...)
}

func chatParams(user string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       testModel,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Tell a story."), openai.UserMessage(user)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
	}
}

func TestOpenAIGoClient(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	client := openAIClient(h)
	ctx := context.Background()

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != testModel || page.Data[0].Object != "model" {
			t.Fatalf("models %s", page.RawJSON())
		}
		m, err := client.Models.Get(ctx, testModel)
		if err != nil || m.ID != testModel {
			t.Fatalf("model %+v, %v", m, err)
		}
		_, err = client.Models.Get(ctx, "nope")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown model: %v; want 404", err)
		}
		p := chatParams("Once", 4)
		p.Model = "nope"
		_, err = client.Chat.Completions.New(ctx, p)
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Param != "model" || apiErr.Code != "model_not_found" {
			t.Fatalf("chat with an unknown model: %v; want 404 model_not_found", err)
		}
	})

	var whole string
	t.Run("chat", func(t *testing.T) {
		var resp *http.Response
		c, err := client.Chat.Completions.New(ctx, chatParams("Once upon a time", 24), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		whole = c.Choices[0].Message.Content
		if len(c.Choices) != 1 || whole == "" || c.Choices[0].FinishReason != "length" || c.Object != "chat.completion" || c.Model != testModel {
			t.Fatalf("completion %+v", c)
		}
		if u := c.Usage; u.CompletionTokens != 24 || u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Fatalf("usage %+v", u)
		}
		if id := resp.Header.Get("X-Job-Id"); id == "" || c.ID != "chatcmpl-"+id {
			t.Fatalf("id %s, X-Job-Id %q", c.ID, id)
		}
	})

	t.Run("chat stream with usage", func(t *testing.T) {
		p := chatParams("Once upon a time", 24)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := client.Chat.Completions.NewStreaming(ctx, p)
		var chunks []openai.ChatCompletionChunk
		for s.Next() {
			chunks = append(chunks, s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 3 {
			t.Fatalf("%d chunks", len(chunks))
		}
		var text strings.Builder
		for i, ch := range chunks {
			if ch.ID != chunks[0].ID || ch.Created != chunks[0].Created || ch.Model != testModel || ch.Object != "chat.completion.chunk" {
				t.Fatalf("chunk %d differs: %+v", i, ch)
			}
			if len(ch.Choices) == 1 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if chunks[0].Choices[0].Delta.Role != "assistant" {
			t.Errorf("first chunk %s; want role assistant", chunks[0].RawJSON())
		}
		last, final := chunks[len(chunks)-1], chunks[len(chunks)-2]
		if len(last.Choices) != 0 || last.Usage.CompletionTokens != 24 || last.Usage.TotalTokens != last.Usage.PromptTokens+24 {
			t.Errorf("last chunk %s; want usage and no choices", last.RawJSON())
		}
		if final.Choices[0].FinishReason != "length" {
			t.Errorf("chunk before usage %s; want finish_reason length", final.RawJSON())
		}
		if text.String() != whole {
			t.Errorf("greedy stream %q; the whole answer was %q", text.String(), whole)
		}
	})

	t.Run("narration in the stream", func(t *testing.T) {
		s := client.Chat.Completions.NewStreaming(ctx, chatParams("Once upon a time", 24), option.WithHeader("X-Narration", "true"))
		var text strings.Builder
		actions := map[string]bool{}
		for s.Next() {
			ch := s.Current()
			if n, ok := ch.JSON.ExtraFields["narration"]; ok {
				var ev struct{ Action, Cute string }
				if err := json.Unmarshal([]byte(n.Raw()), &ev); err != nil || ev.Cute == "" || len(ch.Choices) != 0 {
					t.Fatalf("narration chunk %s: %v", ch.RawJSON(), err)
				}
				actions[ev.Action] = true
				continue
			}
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"request_validated", "inference_start", "tokenize", "inference_complete"} {
			if !actions[a] {
				t.Errorf("no %s narration in the stream; got %v", a, actions)
			}
		}
		if text.String() != whole {
			t.Errorf("text with narration %q; without %q", text.String(), whole)
		}
	})

	t.Run("completion", func(t *testing.T) {
		c, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(16), Temperature: openai.Float(0),
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Object != "text_completion" || len(c.Choices) != 1 || c.Choices[0].Text == "" || c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokens != 16 {
			t.Fatalf("completion %s", c.RawJSON())
		}
		s := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
			Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(16), Temperature: openai.Float(0),
		})
		var text strings.Builder
		n := 0
		for s.Next() {
			ch := s.Current()
			if ch.Object != "text_completion" {
				t.Fatalf("chunk %s", ch.RawJSON())
			}
			text.WriteString(ch.Choices[0].Text)
			n++
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != c.Choices[0].Text {
			t.Errorf("streamed %q in %d chunks; whole %q", text.String(), n, c.Choices[0].Text)
		}
	})

	t.Run("stop", func(t *testing.T) {
		words := strings.Fields(whole)
		if len(words) < 3 {
			t.Fatalf("too short to pick a stop word: %q", whole)
		}
		stop := " " + words[2]
		p := chatParams("Once upon a time", 24)
		p.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(stop)}
		c, err := client.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want := whole[:strings.Index(whole, stop)]
		if got := c.Choices[0]; got.Message.Content != want || got.FinishReason != "stop" {
			t.Fatalf("with stop %q: %q (%s); want %q (stop)", stop, got.Message.Content, got.FinishReason, want)
		}
	})

	t.Run("seed", func(t *testing.T) {
		run := func() string {
			p := chatParams("The dog", 32)
			p.Temperature, p.Seed = openai.Float(1.2), openai.Int(7)
			c, err := client.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			return c.Choices[0].Message.Content
		}
		if a, b := run(), run(); a != b || a == "" {
			t.Fatalf("same seed, different text: %q, %q", a, b)
		}
	})

	t.Run("json_schema", func(t *testing.T) {
		schema := map[string]any{
			"type": "object",
			"properties": map[string]any{
				"name":  map[string]any{"type": "string", "maxLength": 20},
				"age":   map[string]any{"type": "integer", "minimum": 0, "maximum": 120},
				"happy": map[string]any{"type": "boolean"},
			},
			"required": []string{"name", "age", "happy"}, "additionalProperties": false,
		}
		for seed := range int64(3) {
			p := chatParams("Describe the girl.", 200)
			p.Temperature, p.Seed = openai.Float(1), openai.Int(seed)
			p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
				JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "girl", Schema: schema, Strict: openai.Bool(true)},
			}}
			c, err := client.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				Name  *string
				Age   *int
				Happy *bool
			}
			content := c.Choices[0].Message.Content
			if err := json.Unmarshal([]byte(content), &v); err != nil || v.Name == nil || v.Age == nil || v.Happy == nil ||
				len([]rune(*v.Name)) > 20 || *v.Age < 0 || *v.Age > 120 || c.Choices[0].FinishReason != "stop" {
				t.Fatalf("seed %d: %q (%s) does not match the schema: %v", seed, content, c.Choices[0].FinishReason, err)
			}
		}
	})

	t.Run("bad parameter", func(t *testing.T) {
		for _, c := range []struct {
			param string
			p     func(*openai.ChatCompletionNewParams)
		}{
			{"n", func(p *openai.ChatCompletionNewParams) { p.N = openai.Int(2) }},
			{"logprobs", func(p *openai.ChatCompletionNewParams) { p.Logprobs = openai.Bool(true) }},
			{"temperature", func(p *openai.ChatCompletionNewParams) { p.Temperature = openai.Float(3) }},
			{"seed", func(p *openai.ChatCompletionNewParams) { p.Seed = openai.Int(-1) }},
			{"tools", func(p *openai.ChatCompletionNewParams) {
				p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f"})}
			}},
			{"presence_penalty", func(p *openai.ChatCompletionNewParams) { p.PresencePenalty = openai.Float(0.5) }},
			{"response_format", func(p *openai.ChatCompletionNewParams) {
				p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
					JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "x", Schema: map[string]any{"$ref": "#/nowhere"}},
				}}
			}},
		} {
			p := chatParams("Once", 8)
			c.p(&p)
			_, err := client.Chat.Completions.New(ctx, p)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != c.param {
				t.Errorf("%s: got %v; want a 400 naming %s", c.param, err, c.param)
			}
		}
	})

	t.Run("aborted stream cancels", func(t *testing.T) {
		raceable(t, func(attempt int) bool {
			sctx, abort := context.WithCancel(ctx)
			var resp *http.Response
			s := client.Chat.Completions.NewStreaming(sctx, chatParams("Once upon a time", 400), option.WithResponseInto(&resp))
			for i := 0; i < 3 && s.Next(); i++ {
			}
			if s.Err() != nil {
				t.Fatal(s.Err())
			}
			abort()
			s.Close()
			id := resp.Header.Get("X-Job-Id")
			_, replay := h.openStream(ctx, http.DefaultClient, "/v1/jobs/"+id+"/events")
			end, _ := lastEnd(t, replay)
			if end.StopReason != "CANCELLED" {
				return true
			}
			if code, st := h.status(id); code != http.StatusOK || st.Status != bridge.StatusCancelled {
				t.Fatalf("status %d %+v; want cancelled", code, st)
			}
			return false
		})
	})
}

// A model's workers come and go: the model list and the routes follow.
func TestOpenAIModelsFollowWorkers(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	client := openAIClient(h)
	ctx := context.Background()
	var apiErr *openai.Error
	if _, err := client.Chat.Completions.New(ctx, chatParams("Once", 4)); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("no worker at all: %v; want 503", err)
	}
	w := testutil.StartWorker(t, h.natsURL)
	if _, err := client.Chat.Completions.New(ctx, chatParams("Once", 4)); err != nil {
		t.Fatalf("a worker serves the model: %v", err)
	}
	w.Stop(t)
	// The worker's shutdown news reaches the bridge apart from the HTTP
	// request: give it the seconds the contract allows.
	for deadline := time.Now().Add(5 * time.Second); ; {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("models 5 s after the worker stopped: %s; want none", page.RawJSON())
		}
		<-time.After(100 * time.Millisecond)
	}
	if _, err := client.Chat.Completions.New(ctx, chatParams("Once", 4)); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable ||
		apiErr.Code != "model_not_available" {
		t.Fatalf("the model's worker stopped: %v; want 503", err)
	}
}

// A job that another worker takes over (its first died) starts its events
// again: the answer tells the story once, streamed or whole.
func TestOpenAIJobTakenOver(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	fakeWorker(t, h, func(id string, w *eventWriter) {
		w.started().token("Once", 0).token(" upon", 1)
		w.publish(&jobs.Started{Header: jobs.Header{Type: jobs.TypeStarted}, Model: testModel, WorkerID: "fake2", Attempt: 2})
		w.token("Once", 0).token(" upon", 1).token(" a time", 2).end(jobs.StopEOS)
	})
	client := openAIClient(h)
	ctx := context.Background()
	c, err := client.Chat.Completions.New(ctx, chatParams("Once", 8))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Choices[0].Message.Content; got != "Once upon a time" || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("whole answer %q (%s)", got, c.Choices[0].FinishReason)
	}
	s := client.Chat.Completions.NewStreaming(ctx, chatParams("Once", 8))
	var text strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) == 1 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := s.Err(); err != nil || text.String() != "Once upon a time" {
		t.Fatalf("streamed %q, %v", text.String(), err)
	}
}

// A browser page may use the official JavaScript client: the preflight
// allows the headers it sends, and the answer exposes the job id.
func TestOpenAICORSPreflight(t *testing.T) {
	h := startBridge(t, bridge.Config{CORSOrigins: []string{"https://app.example"}})
	resp, _ := h.do(http.MethodOptions, "/v1/chat/completions", "", "Origin", "https://app.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type,x-stainless-os,x-stainless-retry-count,x-narration")
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"authorization", "content-type", "x-stainless-os", "x-stainless-retry-count", "x-narration"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("preflight allows %q; not %s", allowed, want)
		}
	}
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Job-Id") {
		t.Errorf("preflight %s, exposing %q", resp.Status, resp.Header.Get("Access-Control-Expose-Headers"))
	}
}
