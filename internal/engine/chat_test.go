package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	. "github.com/narrated/llmworker/internal/engine"
)

func TestRenderChatPlain(t *testing.T) {
	e := loadShared(t)
	if got := e.Info().ChatTemplate; got != PlainChat {
		t.Fatalf("stories260K has no chat template, so %q; got %q", PlainChat, got)
	}
	got, err := e.RenderChat([]Message{{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "A story?"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: A story?\n\nAssistant:"
	if got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	if _, err := e.RenderChat(nil); err == nil {
		t.Error("an empty chat rendered")
	}
}

// Constrained by a schema's grammar, even the tiny model writes JSON that
// parses and matches, at any temperature.
func TestGrammarConstrainsOutput(t *testing.T) {
	e := loadShared(t)
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"},"happy":{"type":"boolean"},"mood":{"enum":["glad","sad"]}},"required":["name","age","happy","mood"],"additionalProperties":false}`
	grammar, err := SchemaGrammar([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Tokenize("Once upon a time")
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint32(4) {
		var b strings.Builder
		res, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: 200, Grammar: grammar,
			Sampling: Sampling{Temperature: 1, TopK: 40, TopP: 1, Seed: seed}},
			Hooks{Piece: func(text string, _ int) { b.WriteString(text) }})
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Name  *string
			Age   *int
			Happy *bool
			Mood  *string
		}
		if err := json.Unmarshal([]byte(b.String()), &v); err != nil || v.Name == nil || v.Age == nil || v.Happy == nil || v.Mood == nil ||
			len([]rune(*v.Name)) > 12 || (*v.Mood != "glad" && *v.Mood != "sad") {
			t.Errorf("seed %d: %q (%v, stop %s) does not match the schema: %v", seed, b.String(), res.Reason, res.Reason, err)
		}
		if res.Reason != StopEOS {
			t.Errorf("seed %d: ended by %s, want EOS once the object is complete", seed, res.Reason)
		}
	}
	for _, bad := range []string{`{"$ref":"#/nowhere"}`, `not json`} {
		if _, err := SchemaGrammar([]byte(bad)); err == nil {
			t.Errorf("schema %s gave a grammar", bad)
		}
	}
}
