// Package engine runs one GGUF model in llama.cpp and serves many
// generations from it at once: one decode loop builds one batch per step
// from every active sequence (continuous batching), samples each, and hands
// each caller its text as whole UTF-8 with stop sequences held back.
//
// It knows llama.cpp and nothing about NATS, HTTP or narration: callers see
// only Load, Tokenize and Generate.
package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/fs/ggml"
	"github.com/ollama/ollama/llama"
	"github.com/ollama/ollama/ml"
)

// Config says which model to load and how many generations it serves.
type Config struct {
	// ModelPath is any GGUF file.
	ModelPath string
	// Parallel is the number of sequences decoded together (slots).
	Parallel int
	// ContextSize is the context of each slot, in tokens: prompt plus
	// generated tokens must fit in it.
	ContextSize int
	// Threads is llama.cpp's thread count; more than free cores makes it
	// busy-wait and collapse.
	Threads int
	// BatchSize is llama.cpp's micro-batch: the most tokens it computes in
	// one pass.
	BatchSize int
	// PrefillChunk bounds the prompt tokens all sequences feed in one
	// decode step (at most BatchSize). A long prompt is absorbed a chunk a
	// step, and the running sequences get a token between chunks instead
	// of waiting for the whole prompt.
	PrefillChunk int
	// FlashAttention turns llama.cpp's flash attention on. Off by default:
	// on CPU it makes long generations several times slower (the README's
	// benchmarks give the figures).
	FlashAttention bool
	// Progress, when set, is called as the model loads (0 to 1).
	Progress func(float32)
}

// Defaults for a Config's zero fields.
const (
	DefaultParallel    = 4
	DefaultContextSize = 2048
	DefaultBatchSize   = 512
	// DefaultPrefillChunk: see the chunked-prefill table in the README.
	DefaultPrefillChunk = 256
)

// DefaultThreads is half the machine's logical cores (about its physical
// cores, as llama.cpp chooses), at least one.
func DefaultThreads() int { return max(1, runtime.NumCPU()/2) }

func (c *Config) applyDefaults() {
	if c.Parallel <= 0 {
		c.Parallel = DefaultParallel
	}
	if c.ContextSize <= 0 {
		c.ContextSize = DefaultContextSize
	}
	if c.Threads <= 0 {
		c.Threads = DefaultThreads()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PrefillChunk <= 0 {
		c.PrefillChunk = DefaultPrefillChunk
	}
	c.PrefillChunk = min(c.PrefillChunk, c.BatchSize)
}

// Info describes a loaded model.
type Info struct {
	// Name is the GGUF's general.name, else (when it is missing or only
	// repeats the architecture) the file's base name without .gguf.
	Name         string
	Path         string
	Architecture string
	SizeBytes    int64
	LoadTime     time.Duration
	ContextSize  int
	Parallel     int
	Threads      int
	// ChatTemplate names the template that renders chats: a family of
	// Ollama's templates matched from the GGUF's, or PlainChat.
	ChatTemplate string
}

// Engine is one loaded model and its decode loop. Its methods are safe for
// concurrent use.
type Engine struct {
	info   Info
	cfg    Config
	model  *llama.Model
	lc     *llama.Context
	chat   chatTemplate
	submit chan *sequence
	quit   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// ErrClosed is returned by Generate once the engine is closed.
var ErrClosed = errors.New("engine closed")

// Load loads the model and starts the decode loop. A missing or non-GGUF
// file gives an error that names the path and the reason.
func Load(cfg Config) (*Engine, error) {
	cfg.applyDefaults()
	size, err := checkGGUF(cfg.ModelPath)
	if err != nil {
		return nil, err
	}
	Devices() // llama.cpp's backends must be up before anything else
	arch, err := llama.GetModelArch(cfg.ModelPath)
	if err != nil {
		return nil, fmt.Errorf("model %s: not a readable GGUF file: %w", cfg.ModelPath, err)
	}
	// The batch first: it needs no model, and a model loaded after it
	// has nothing left to fail that would strand it.
	batch, err := llama.NewBatch(cfg.BatchSize, cfg.Parallel, 0)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", cfg.ModelPath, err)
	}

	start := time.Now()
	var model *llama.Model
	reason := captureStderr(func() {
		model, err = llama.LoadModelFromFile(cfg.ModelPath, llama.ModelParams{
			NumGpuLayers: 999, // all layers on a GPU when llama.cpp has one; ignored on CPU
			UseMmap:      true,
			Progress:     cfg.Progress,
		})
	})
	if err != nil {
		batch.Free()
		return nil, fmt.Errorf("model %s (architecture %q): llama.cpp could not load it: %s", cfg.ModelPath, arch, reason)
	}
	flash := ml.FlashAttentionDisabled
	if cfg.FlashAttention {
		flash = ml.FlashAttentionEnabled
	}
	params := llama.NewContextParams(cfg.ContextSize*cfg.Parallel, cfg.BatchSize, cfg.Parallel, cfg.Threads, flash, "")
	var lc *llama.Context
	reason = captureStderr(func() { lc, err = llama.NewContextWithModel(model, params) })
	if err != nil {
		llama.FreeModel(model)
		batch.Free()
		return nil, fmt.Errorf("model %s: llama.cpp could not create a context of %d×%d tokens: %s", cfg.ModelPath, cfg.Parallel, cfg.ContextSize, reason)
	}

	chat := loadChatTemplate(cfg.ModelPath)
	e := &Engine{
		cfg:    cfg,
		chat:   chat,
		model:  model,
		lc:     lc,
		submit: make(chan *sequence),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		info: Info{
			Name:         modelName(cfg.ModelPath),
			Path:         cfg.ModelPath,
			Architecture: arch,
			SizeBytes:    size,
			LoadTime:     time.Since(start),
			ContextSize:  cfg.ContextSize,
			Parallel:     cfg.Parallel,
			Threads:      cfg.Threads,
			ChatTemplate: chat.name,
		},
	}
	go e.run(batch)
	return e, nil
}

// modelName is the GGUF's general.name, else the file's base name without
// .gguf. A general.name that only repeats the architecture ("llama", as
// older converters wrote it) names nothing and gives way to the file's.
func modelName(path string) string {
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		if meta, err := ggml.Decode(f, 0); err == nil {
			kv := meta.KV()
			if name := kv.String("general.name"); name != "" && !strings.EqualFold(name, kv.String("general.architecture")) {
				return name
			}
		}
	}
	base := filepath.Base(path)
	if ext := filepath.Ext(base); ext == ".gguf" {
		return base[:len(base)-len(ext)]
	}
	return base
}

// checkGGUF gives the plain reasons a path is no model before llama.cpp
// sees it, and the file's size.
func checkGGUF(path string) (int64, error) {
	if path == "" {
		return 0, errors.New("no model given: set -model or MODEL_PATH to a GGUF file")
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("model %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("model %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("model %s: not a regular file", path)
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "GGUF" {
		return 0, fmt.Errorf("model %s: not a GGUF file (it does not start with the GGUF magic bytes)", path)
	}
	return st.Size(), nil
}

// Info describes the loaded model.
func (e *Engine) Info() Info { return e.info }

// ModelName is the name the model is served under: the GGUF's
// general.name, else the file's stem ("stories260K").
func (e *Engine) ModelName() string { return e.info.Name }

// Close stops the decode loop; running generations end as cancelled. Any
// number of callers may close, at once or again: each returns once the
// loop has stopped. llama.cpp offers no way to free a context, so the
// model stays mapped until the process exits.
func (e *Engine) Close() {
	e.closed.Do(func() { close(e.quit) })
	<-e.done
}

// Prompt is a tokenized prompt, ready for Generate.
type Prompt struct{ tokens []int }

// Len is the prompt's length in tokens.
func (p Prompt) Len() int { return len(p.tokens) }

// Tokenize turns text into the model's tokens, with the model's BOS token
// and with special tokens in the text parsed, as llama.cpp's server does.
func (e *Engine) Tokenize(text string) (Prompt, error) {
	tokens, err := e.model.Tokenize(text, true, true)
	if err != nil {
		return Prompt{}, fmt.Errorf("tokenize: %w", err)
	}
	if len(tokens) == 0 {
		return Prompt{}, errors.New("tokenize: the prompt gives no tokens")
	}
	return Prompt{tokens: tokens}, nil
}

// ContextError says a prompt and its generation do not fit a slot.
type ContextError struct {
	PromptTokens, MaxTokens, ContextSize int
}

func (e *ContextError) Error() string {
	return fmt.Sprintf("prompt (%d tokens) plus max_tokens (%d) exceeds the context (%d tokens)", e.PromptTokens, e.MaxTokens, e.ContextSize)
}

// checkFits refuses a generation that could outgrow its slot.
func (e *Engine) checkFits(p Prompt, maxTokens int) error {
	if p.Len()+maxTokens > e.cfg.ContextSize || maxTokens < 1 {
		return &ContextError{PromptTokens: p.Len(), MaxTokens: maxTokens, ContextSize: e.cfg.ContextSize}
	}
	return nil
}
