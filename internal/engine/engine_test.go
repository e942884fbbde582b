package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/testutil"
)

var (
	sharedOnce   sync.Once
	sharedEngine *Engine
	sharedErr    error
)

// loadShared loads the shared model once for the package's tests.
func loadShared(t *testing.T) *Engine {
	t.Helper()
	path := testutil.ModelPath(t)
	sharedOnce.Do(func() {
		sharedEngine, sharedErr = Load(Config{ModelPath: path, Parallel: 4, ContextSize: 256, Threads: 1})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedEngine
}

func greedy(t *testing.T, e *Engine, prompt string, maxTokens int, stop ...string) (string, Result) {
	t.Helper()
	return generate(t, e, prompt, maxTokens, Sampling{TopK: 40, TopP: 1}, stop...)
}

func generate(t *testing.T, e *Engine, prompt string, maxTokens int, s Sampling, stop ...string) (string, Result) {
	t.Helper()
	p, err := e.Tokenize(prompt)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	next := 0
	res, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: maxTokens, Stop: stop, Sampling: s},
		Hooks{Piece: func(text string, i int) {
			if i != next {
				t.Errorf("piece index %d, want %d", i, next)
			}
			next++
			b.WriteString(text)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pieces != next {
		t.Errorf("result says %d pieces, hooks saw %d", res.Pieces, next)
	}
	return b.String(), res
}

func TestGreedyStory(t *testing.T) {
	e := loadShared(t)
	text, res := greedy(t, e, "Once upon a time", 40)
	if !strings.Contains(text, "Lily") {
		t.Errorf("greedy story has no Lily: %q", text)
	}
	if res.Reason != StopMaxTokens || res.Tokens != 40 || res.PromptTokens < 2 {
		t.Errorf("result %+v", res)
	}
	again, _ := greedy(t, e, "Once upon a time", 40)
	if again != text {
		t.Errorf("greedy is not deterministic:\n%q\n%q", text, again)
	}
}

// Batched sequences must generate exactly what each generates alone.
func TestParallelMatchesSequential(t *testing.T) {
	e := loadShared(t)
	prompts := []string{"Once upon a time", "The dog", "Tom had a red ball", "One day"}
	want := make([]string, len(prompts))
	for i, p := range prompts {
		want[i], _ = greedy(t, e, p, 30)
	}
	got := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() { got[i], _ = greedy(t, e, p, 30) })
	}
	wg.Wait()
	for i := range prompts {
		if got[i] != want[i] {
			t.Errorf("prompt %q batched:\n%q\nalone:\n%q", prompts[i], got[i], want[i])
		}
	}
}

// Greedy takes the argmax of the logits, not llama.cpp's sampler chain:
// the chain keeping only its top token (top-k 1, at temperature 1) must
// pick the same tokens.
func TestGreedyIsTheSamplersTopToken(t *testing.T) {
	e := loadShared(t)
	for _, prompt := range []string{"Once upon a time", "The dog", "Tom had a red ball"} {
		want, _ := generate(t, e, prompt, 60, Sampling{Temperature: 1, TopK: 1, TopP: 1, Seed: 7})
		got, _ := generate(t, e, prompt, 60, Sampling{TopP: 1})
		if got != want {
			t.Errorf("%q: greedy gave\n%q\nthe sampler chain\n%q", prompt, got, want)
		}
	}
}

// A prompt absorbed in chunks of 7 tokens, beside a running sequence,
// gives what it gives absorbed whole.
func TestChunkedPrefillMatchesWhole(t *testing.T) {
	whole := loadShared(t)
	chunked, err := Load(Config{ModelPath: testutil.ModelPath(t), Parallel: 2, ContextSize: 256, Threads: 1, PrefillChunk: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer chunked.Close()
	long := strings.Repeat("Tom and Lily went to the park to play with a ball. ", 6)
	want, _ := greedy(t, whole, long, 30)
	var wg sync.WaitGroup
	wg.Go(func() { greedy(t, chunked, "Once upon a time", 100) })
	got, res := greedy(t, chunked, long, 30)
	wg.Wait()
	if got != want || res.PromptTokens < 60 {
		t.Errorf("chunked (%d prompt tokens):\n%q\nwhole:\n%q", res.PromptTokens, got, want)
	}
}

func TestStopSequence(t *testing.T) {
	e := loadShared(t)
	full, _ := greedy(t, e, "Once upon a time", 40)
	i := strings.Index(full, "Lily")
	if i < 0 {
		t.Fatalf("no Lily in %q", full)
	}
	text, res := greedy(t, e, "Once upon a time", 40, "Lily")
	if text != full[:i] || res.Reason != StopSequence || res.StopSequence != "Lily" {
		t.Errorf("got %q (%v %q), want %q", text, res.Reason, res.StopSequence, full[:i])
	}
}

func TestCancelStopsWithinAStep(t *testing.T) {
	e := loadShared(t)
	p, _ := e.Tokenize("Once upon a time")
	ctx, cancel := context.WithCancel(context.Background())
	var pieces int
	res, err := e.Generate(ctx, Request{Prompt: p, MaxTokens: 200, Sampling: Sampling{TopP: 1}}, Hooks{Piece: func(string, int) {
		pieces++
		if pieces == 5 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The hook runs behind the loop, which may have sampled a few more
	// tokens before it saw the cancel; far fewer than 200.
	if res.Reason != StopCancelled || res.Tokens >= 100 {
		t.Errorf("result %+v", res)
	}
}

func TestContextOverflow(t *testing.T) {
	e := loadShared(t)
	p, _ := e.Tokenize("Once upon a time")
	_, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: 256}, Hooks{})
	var ce *ContextError
	if !errors.As(err, &ce) || ce.ContextSize != 256 || ce.PromptTokens != p.Len() {
		t.Fatalf("err = %v, want a ContextError", err)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct{ path, reason string }{
		{filepath.Join(dir, "missing.gguf"), "no such file"},
		{dir, "not a regular file"},
		{write("text.gguf", "hello, I am no model"), "not a GGUF file"},
		{write("empty.gguf", ""), "not a GGUF file"},
		{write("cut.gguf", "GGUF\x03\x00\x00\x00garbage"), "not a readable GGUF file"},
	}
	for _, tt := range tests {
		_, err := Load(Config{ModelPath: tt.path, Threads: 1})
		if err == nil || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("Load(%s) = %v; want an error naming the path and %q", tt.path, err, tt.reason)
		}
	}
}

func TestDevices(t *testing.T) {
	d := Devices()
	// Every amd64 machine llama.cpp supports has SSE3; arm64 has NEON.
	if !strings.Contains(d.CPU, "SSE3") && !strings.Contains(d.CPU, "NEON") {
		t.Errorf("devices: %+v", d)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEngine != nil {
		done := make(chan struct{})
		go func() { sharedEngine.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic("engine did not close")
		}
	}
	os.Exit(code)
}

// A prompt that repeats the start of a slot's last generation reuses that
// part of its KV cache, and generates exactly what a fresh engine does.
func TestPromptCache(t *testing.T) {
	load := func(parallel int) *Engine {
		e, err := Load(Config{ModelPath: testutil.ModelPath(t), Parallel: parallel, ContextSize: 256, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		return e
	}
	run := func(e *Engine, prompt string) (string, Result, [3]int) {
		p, _ := e.Tokenize(prompt)
		var text strings.Builder
		var slot [3]int
		res, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: 30, Sampling: Sampling{TopP: 1}}, Hooks{
			Slot:  func(s, reused, cleared int) { slot = [3]int{s, reused, cleared} },
			Piece: func(s string, _ int) { text.WriteString(s) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return text.String(), res, slot
	}
	e := load(2)
	first, res, _ := run(e, "Once upon a time")
	if res.PromptCached != 0 {
		t.Errorf("a fresh engine reused %d tokens", res.PromptCached)
	}
	again, res2, slot := run(e, "Once upon a time")
	if again != first || res2.PromptCached != res.PromptTokens-1 || slot[1] != res2.PromptCached || slot[2] == 0 {
		t.Errorf("repeat: %q cached %d of %d, slot %v; want %q", again, res2.PromptCached, res2.PromptTokens, slot, first)
	}
	longer := "Once upon a time, there was a big dog"
	got, res3, _ := run(e, longer)
	if res3.PromptCached == 0 {
		t.Errorf("a prompt that extends the last one reused nothing")
	}
	want, _, _ := run(load(1), longer)
	if got != want {
		t.Errorf("with reused cache:\n%q\nfresh:\n%q", got, want)
	}
}

// Close may come from many callers at once, during a generation: each
// returns once the loop has stopped, the generation ends as cancelled, and
// later calls are refused.
func TestConcurrentClose(t *testing.T) {
	e, err := Load(Config{ModelPath: testutil.ModelPath(t), Parallel: 1, ContextSize: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Tokenize("Once upon a time")
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	var once sync.Once
	type outcome struct {
		res Result
		err error
	}
	generated := make(chan outcome, 1)
	go func() {
		res, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: 200, Sampling: Sampling{TopP: 1}},
			Hooks{Piece: func(string, int) { once.Do(func() { close(first) }) }})
		generated <- outcome{res, err}
	}()
	<-first
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(e.Close)
	}
	wg.Wait()
	if got := <-generated; got.err != nil || got.res.Reason != StopCancelled && got.res.Reason != StopMaxTokens && got.res.Reason != StopEOS {
		t.Errorf("generation during Close: %+v, %v", got.res, got.err)
	}
	e.Close()
	if _, err := e.Generate(context.Background(), Request{Prompt: p, MaxTokens: 5}, Hooks{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close: %v, want ErrClosed", err)
	}
}
