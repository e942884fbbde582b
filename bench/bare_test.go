package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/llama"
	"github.com/ollama/ollama/ml"

	"github.com/narrated/llmworker/internal/engine"
)

// bare is llama.cpp with nothing of ours around it: the loop of llama.cpp's
// `simple` example through the same `llama` package the engine uses, on its
// own context of the engine's shape (same threads, slots, slot size, batch
// size). It is the baseline every path is measured against.
type bare struct {
	model  *llama.Model
	lc     *llama.Context
	batch  *llama.Batch
	vocab  int
	prompt []int
	w      workload
}

// newBare loads path a second time (mmap shares its pages with the
// engine's copy) and makes a context for parallel sequences.
func newBare(tb testing.TB, path string, w workload, parallel, contextSize, threads int) *bare {
	tb.Helper()
	engine.Devices() // llama.cpp's backends up, as the engine does
	model, err := llama.LoadModelFromFile(path, llama.ModelParams{UseMmap: true})
	if err != nil {
		tb.Fatal(err)
	}
	lc, err := llama.NewContextWithModel(model, llama.NewContextParams(contextSize*parallel, engine.DefaultBatchSize, parallel, threads, ml.FlashAttentionDisabled, ""))
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := llama.NewBatch(engine.DefaultBatchSize, parallel, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(batch.Free)
	tokens, err := model.Tokenize(w.prompt, true, true)
	if err != nil {
		tb.Fatal(err)
	}
	return &bare{model: model, lc: lc, batch: batch, vocab: model.NumVocab(), prompt: tokens, w: w}
}

// path is the bare loop as a path of the bench: n sequences in one batch
// (n = 1 is the `simple` example: one sequence, a batch of one token a
// step), each fed the prompt, then greedy, maxTokens tokens each. Each
// token is turned into its text, as any user of llama.cpp would.
func (bl *bare) path() path {
	return path{"bare llama.cpp", func(b *testing.B, n int) *run {
		r := newRun(n)
		for s := range n {
			bl.lc.KvCacheSeqRm(s, 0, -1)
		}
		out := make([]int, n) // each sequence's logits in the batch
		pos, steps := len(bl.prompt), bl.w.maxTokens
		if n*len(bl.prompt) > engine.DefaultBatchSize {
			bl.longPrompts(b, r, n)
			pos, steps = pos+1, steps-1
			for s := range n {
				out[s] = s
			}
		} else {
			bl.batch.Clear()
			for s := range n {
				for j, t := range bl.prompt {
					bl.batch.Add(t, nil, j, j == len(bl.prompt)-1, s)
				}
				out[s] = (s+1)*len(bl.prompt) - 1
			}
		}
		for range steps {
			if err := bl.lc.Decode(bl.batch); err != nil {
				b.Fatal(err)
			}
			bl.batch.Clear()
			for s := range n {
				token := bl.greedy(out[s])
				_ = bl.model.TokenToPiece(token)
				r.token(s)
				out[s] = s
				bl.batch.Add(token, nil, pos, true, s)
			}
			pos++
		}
		return r
	}}
}

// longPrompts feeds n sequences prompts longer than a batch holds: each
// sequence's prompt in batches of DefaultBatchSize tokens, then its first
// token sampled; it leaves those first tokens in the batch for the next
// step.
func (bl *bare) longPrompts(b *testing.B, r *run, n int) {
	first := make([]int, n)
	for s := range n {
		for at := 0; at < len(bl.prompt); at += engine.DefaultBatchSize {
			bl.batch.Clear()
			for j := at; j < min(at+engine.DefaultBatchSize, len(bl.prompt)); j++ {
				bl.batch.Add(bl.prompt[j], nil, j, j == len(bl.prompt)-1, s)
			}
			if err := bl.lc.Decode(bl.batch); err != nil {
				b.Fatal(err)
			}
		}
		first[s] = bl.greedy(bl.batch.NumTokens() - 1)
		_ = bl.model.TokenToPiece(first[s])
		r.token(s)
	}
	bl.batch.Clear()
	for s, token := range first {
		bl.batch.Add(token, nil, len(bl.prompt), true, s)
	}
}

// greedy is the argmax of the logits at batch index i.
func (bl *bare) greedy(i int) int {
	logits := bl.lc.GetLogitsIth(i)
	best := 0
	for t, l := range logits {
		if l > logits[best] {
			best = t
		}
	}
	return best
}

func modelName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".gguf")
}

// loadAverage is the machine's 1-minute load, as uptime tells it: what
// else ran while a figure was taken.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(data))[0]
}

// prefill decodes text as a prompt of one sequence in as few batches as
// the context allows, and samples its first token.
func (bl *bare) prefill(tb testing.TB, text string) int {
	tokens, err := bl.model.Tokenize(text, true, true)
	if err != nil {
		tb.Fatal(err)
	}
	bl.lc.KvCacheSeqRm(0, 0, -1)
	for at := 0; at < len(tokens); at += engine.DefaultBatchSize {
		bl.batch.Clear()
		end := min(at+engine.DefaultBatchSize, len(tokens))
		for j := at; j < end; j++ {
			bl.batch.Add(tokens[j], nil, j, j == len(tokens)-1, 0)
		}
		if err := bl.lc.Decode(bl.batch); err != nil {
			tb.Fatal(err)
		}
	}
	return bl.greedy(bl.batch.NumTokens() - 1)
}
