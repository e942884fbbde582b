package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/narrated/llmworker/internal/engine"
)

func TestDefaultShapeIs134M(t *testing.T) {
	s := Shape{Embedding: 768, Layers: 12, Heads: 12, FeedForward: 2048, Vocab: 32000, Context: 2048}
	if p := s.Params(); p/1_000_000 != 134 {
		t.Errorf("%d parameters, want 134M", p)
	}
}

// A small model of each type loads in llama.cpp and generates every token
// it is asked for, each a whole piece (the zero output rows of the control
// and byte tokens keep greedy off EOS and off partial characters).
func TestWrittenModelsLoadAndGenerate(t *testing.T) {
	small := Shape{Embedding: 64, Layers: 2, Heads: 4, FeedForward: 128, Vocab: 1024, Context: 256}
	for _, typ := range []string{"f16", "q8_0"} {
		t.Run(typ, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "small-"+typ+".gguf")
			if err := Write(path, small, typ, 1); err != nil {
				t.Fatal(err)
			}
			eng, err := engine.Load(engine.Config{ModelPath: path, Parallel: 1, ContextSize: 128, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			p, err := eng.Tokenize("Once upon a time, 42 dogs!")
			if err != nil {
				t.Fatal(err)
			}
			pieces := 0
			res, err := eng.Generate(context.Background(), engine.Request{Prompt: p, MaxTokens: 20, Sampling: engine.Sampling{TopP: 1}},
				engine.Hooks{Piece: func(string, int) { pieces++ }})
			if err != nil {
				t.Fatal(err)
			}
			if res.Tokens != 20 || res.Reason != engine.StopMaxTokens || pieces != 20 {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	ok := Shape{Embedding: 64, Layers: 1, Heads: 4, FeedForward: 128, Vocab: 1024, Context: 256}
	bad := ok
	bad.Heads = 5
	for name, c := range map[string]struct {
		s   Shape
		typ string
	}{"type": {ok, "q4_0"}, "heads": {bad, "f16"}} {
		if err := Write(filepath.Join(dir, name+".gguf"), c.s, c.typ, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
			t.Errorf("%s: left %v", name, m)
		}
	}
}
