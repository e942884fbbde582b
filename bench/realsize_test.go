package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/cpulevel"
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/testutil"
)

// realModel is the generated Llama of 134M parameters (`make bench`
// writes it with cmd/mkmodel into a cache and sets BENCH_MODEL).
func realModel(b *testing.B) string {
	path := os.Getenv("BENCH_MODEL")
	if path == "" {
		b.Skip("BENCH_MODEL unset: `make bench` generates the 134M model and sets it")
	}
	if _, err := os.Stat(path); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkRealSize prints the paths' table on the 134M model, where
// compute, not per-token overhead, dominates: 48 tokens a job, 1, 4 and 8
// jobs at once (BENCH_ROUNDS, default 5). The gains of batches are given
// twice: by tokens/s from the request, and by decode rate, which leaves
// out the prompt, which the engine's paths find in the prompt cache (the
// same prompt every round) and bare llama.cpp decodes each time: that
// makes their single job faster than bare's, and so their gain smaller.
func BenchmarkRealSize(b *testing.B) {
	model := realModel(b)
	rounds := envInt("BENCH_ROUNDS", 5)
	jobCounts := []int{1, 4, 8}
	rg := newRig(b, model, 8, 2048, workload{prompt: "Once upon a time", maxTokens: 48})
	st := rg.measure(b, jobCounts, rounds)
	b.StopTimer()
	rg.print(b, "48 tokens a job, greedy", jobCounts, rounds, st)
	for _, n := range jobCounts[1:] {
		for _, p := range rg.paths[1:] {
			s := st[key{p.name, n}]
			fmt.Printf("- %d jobs, %s: gain %.2f× over its single job, %.1f%% of bare batched's gain (target ≥ 95%%); by decode rate (prompts left out), %.1f%%\n",
				n, p.name, median(s.gain), 100*median(s.vsBareGain), 100*median(s.decodeVsBareGain))
		}
	}
}

// BenchmarkPrompt prints, on the 134M model, prompt processing of a
// 512-token prompt (engine against bare llama.cpp, each prompt new to the
// cache) and what the prompt cache saves a job whose 400-token system
// prompt an earlier job had.
func BenchmarkPrompt(b *testing.B) {
	model := realModel(b)
	rounds := envInt("BENCH_ROUNDS", 5)
	threads := envInt("BENCH_THREADS", 1)
	eng, err := engine.Load(engine.Config{ModelPath: model, Parallel: 4, ContextSize: 1024, Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	bl := newBare(b, model, workload{prompt: "x"}, 4, 1024, threads)
	var bareRate, engRate, ratio []float64
	var cold, warm []time.Duration
	for round := range rounds {
		// A new first word each round keeps the prompt out of the cache.
		text := promptText(b, eng, fmt.Sprintf("Round %d.", round), 512)
		p := tokenize(b, eng, text)
		t0 := time.Now()
		bl.prefill(b, text)
		bareRate = append(bareRate, float64(p.Len())/time.Since(t0).Seconds())
		t0 = time.Now()
		generate(b, eng, p, 1)
		engRate = append(engRate, float64(p.Len())/time.Since(t0).Seconds())
		ratio = append(ratio, engRate[round]/bareRate[round])

		system := promptText(b, eng, fmt.Sprintf("System %d.", round), 400)
		for i, d := range []*[]time.Duration{&cold, &warm} {
			q := tokenize(b, eng, system+fmt.Sprintf(" Question %d: what is the answer?", i))
			t0 = time.Now()
			generate(b, eng, q, 1)
			*d = append(*d, time.Since(t0))
		}
	}
	b.StopTimer()
	fmt.Printf("\nPrompts: %s, %d llama.cpp thread(s), medians of %d rounds, load %s\n\n", modelName(model), threads, rounds, loadAverage())
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| 512-token prompt, bare llama.cpp | %.0f tokens/s |\n", median(bareRate))
	fmt.Printf("| 512-token prompt, engine | %.0f tokens/s (%.1f%% of bare) |\n", median(engRate), 100*median(ratio))
	fmt.Printf("| shared 400-token system prompt, first job (cold) | %.0f ms to first token |\n", ms(median(cold)))
	fmt.Printf("| shared 400-token system prompt, next job (cached) | %.0f ms to first token (%.0f%% saved) |\n",
		ms(median(warm)), 100*(1-float64(median(warm))/float64(median(cold))))
}

// promptText is lead followed by words, n tokens in all (or one or two
// more, where the last word takes several).
func promptText(b *testing.B, eng *engine.Engine, lead string, n int) string {
	words := strings.Fields("the cat sat on a mat and the dog ran to the park where kids play ball all day long")
	text := lead
	for i := 0; tokenize(b, eng, text).Len() < n; i++ {
		text += " " + words[i%len(words)]
	}
	return text
}

func tokenize(b *testing.B, eng *engine.Engine, text string) engine.Prompt {
	p, err := eng.Tokenize(text)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// generate runs one greedy job on the engine.
func generate(b *testing.B, eng *engine.Engine, p engine.Prompt, maxTokens int) engine.Result {
	res, err := eng.Generate(context.Background(), engine.Request{Prompt: p, MaxTokens: maxTokens, Sampling: greedy}, engine.Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// BenchmarkBare prints bare llama.cpp alone on the 134M model, 1, 4 and 8
// sequences: what a build (CPU=x86-64-v3 against -v4) is worth, without
// the rest of the service.
func BenchmarkBare(b *testing.B) {
	model := realModel(b)
	rounds := envInt("BENCH_ROUNDS", 3)
	threads := envInt("BENCH_THREADS", 1)
	jobCounts := []int{1, 4, 8}
	bl := newBare(b, model, workload{prompt: "Once upon a time", maxTokens: 48}, 8, 2048, threads)
	rg := &rig{model: model, parallel: 8, threads: threads, paths: []path{bl.path()}}
	st := rg.measure(b, jobCounts, rounds)
	b.StopTimer()
	rg.print(b, "bare llama.cpp, 48 tokens a job, built for "+cpulevel.Built(), jobCounts, rounds, st)
}

// BenchmarkChunkedPrefill prints, on the 134M model, what running streams
// see while a 1,500-token prompt is absorbed, for several prefill chunks
// (one engine each, taking turns round by round): their inter-token
// latency (p50, p99, and p50 against their own before the prompt came)
// and the long prompt's time to first token.
func BenchmarkChunkedPrefill(b *testing.B) {
	model := realModel(b)
	rounds := envInt("BENCH_ROUNDS", 2)
	threads := envInt("BENCH_THREADS", 1)
	const running = 3
	chunks := []int{128, 256, 512}
	engines := make([]*engine.Engine, len(chunks))
	for i, chunk := range chunks {
		eng, err := engine.Load(engine.Config{ModelPath: model, Parallel: running + 1, ContextSize: 2048, Threads: threads, PrefillChunk: chunk})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(eng.Close)
		engines[i] = eng
	}
	gaps := make([][]time.Duration, len(chunks))
	ttft := make([][]time.Duration, len(chunks))
	slowdown := make([][]float64, len(chunks))
	for round := range rounds {
		for _, i := range order(len(engines), round) {
			eng := engines[i]
			long := tokenize(b, eng, promptText(b, eng, fmt.Sprintf("Chunk %d round %d.", chunks[i], round), 1500))
			before, during, t := absorb(b, eng, running, long)
			gaps[i] = append(gaps[i], during...)
			ttft[i] = append(ttft[i], t)
			slowdown[i] = append(slowdown[i], float64(percentile(during, 0.5))/float64(percentile(before, 0.5)))
		}
	}
	b.StopTimer()
	fmt.Printf("\nChunked prefill: %s, %d llama.cpp thread(s), %d running streams, a 1,500-token prompt arriving, %d rounds, load %s\n\n",
		modelName(model), threads, running, rounds, loadAverage())
	fmt.Printf("| prefill chunk | running streams' inter-token latency p50 | p99 | p50 against before the prompt | the long prompt's time to first token |\n|---|---|---|---|---|\n")
	for i, chunk := range chunks {
		fmt.Printf("| %d | %.0f ms | %.0f ms | %.1f× | %.0f ms |\n", chunk, ms(percentile(gaps[i], 0.5)), ms(percentile(gaps[i], 0.99)),
			median(slowdown[i]), ms(median(ttft[i])))
	}
}

// absorb starts running streams, sends long once each has 8 tokens, and
// returns the streams' gaps between tokens before it and until long's
// first token, and long's time to first token.
func absorb(b *testing.B, eng *engine.Engine, running int, long engine.Prompt) (before, during []time.Duration, ttft time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	short := tokenize(b, eng, "Once upon a time")
	var mu sync.Mutex
	last := make([]time.Time, running)
	var sent, first time.Time
	started := make(chan struct{}, running)
	var wg sync.WaitGroup
	for i := range running {
		wg.Go(func() {
			eng.Generate(ctx, engine.Request{Prompt: short, MaxTokens: 1900, Sampling: greedy}, engine.Hooks{Piece: func(_ string, n int) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case n == 0:
				case sent.IsZero():
					before = append(before, now.Sub(last[i]))
				case first.IsZero():
					during = append(during, now.Sub(last[i]))
				}
				last[i] = now
				if n == 8 {
					started <- struct{}{}
				}
			}})
		})
	}
	for range running {
		<-started
	}
	mu.Lock()
	sent = time.Now()
	mu.Unlock()
	eng.Generate(ctx, engine.Request{Prompt: long, MaxTokens: 1, Sampling: greedy}, engine.Hooks{Piece: func(string, int) {
		mu.Lock()
		first = time.Now()
		mu.Unlock()
	}})
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return before, during, first.Sub(sent)
}

// BenchmarkLongContexts prints 8 jobs whose contexts reach about 1,500
// tokens each (a 1,400-token prompt, then 100 tokens), on stories260K,
// where attention over the KV cache weighs most beside the model's tiny
// matrices: the engine and the NATS path against bare batched llama.cpp,
// all through the `llama` package's context parameters (each sequence its
// own KV stream: kv_unified off). The rate counts the tokens after each
// job's first, so the prompt cache, which spares the engine's paths the
// repeated prompt, does not flatter them.
func BenchmarkLongContexts(b *testing.B) {
	rounds := envInt("BENCH_ROUNDS", 5)
	model := testutil.ModelPath(b)
	eng, err := engine.Load(engine.Config{ModelPath: model, Parallel: 1, ContextSize: 2048, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	text := promptText(b, eng, "Once upon a time", 1400)
	eng.Close()
	jobCounts := []int{1, 8}
	rg := newRig(b, model, 8, 2048, workload{prompt: text, maxTokens: 100})
	rg.paths = rg.paths[:3] // the SSE client adds nothing the NATS path does not show here
	st := rg.measure(b, jobCounts, rounds)
	b.StopTimer()
	fmt.Printf("\nLong contexts: %s, a 1,400-token prompt then 100 tokens a job, 2,048-token slots, %d llama.cpp thread(s), medians of %d rounds, load %s\n\n",
		modelName(model), rg.threads, rounds, loadAverage())
	fmt.Printf("| path | jobs | decode tokens/s (all jobs, once all generate) | vs bare | TTFT p50 |\n|---|---|---|---|---|\n")
	for _, n := range jobCounts {
		for _, p := range rg.paths {
			s := st[key{p.name, n}]
			fmt.Printf("| %s | %d | %.0f | %.1f%% | %.1f ms |\n", p.name, n, median(s.decode), 100*median(s.decodeVsBare), ms(median(s.ttft)))
		}
	}
}
