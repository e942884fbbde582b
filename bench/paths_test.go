package bench

import (
	"fmt"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/testutil"
)

// rig is one model served every way the bench measures: bare llama.cpp,
// the engine, a worker on an embedded NATS server, and the bridge.
type rig struct {
	model    string
	parallel int
	threads  int
	paths    []path // paths[0] is bare llama.cpp, the baseline
}

// newRig loads model into the engine and into a bare context of the same
// shape, starts a worker and a bridge on an embedded NATS server, and
// returns every path with w as its workload.
func newRig(b *testing.B, model string, parallel, contextSize int, w workload) *rig {
	threads := envInt("BENCH_THREADS", 1)
	_, url := testutil.StartNATS(b)
	eng, err := engine.Load(engine.Config{ModelPath: model, Parallel: parallel, ContextSize: contextSize, Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	testutil.StartWorkerWith(b, url, testutil.WorkerOptions{Engine: eng, Parallel: parallel})
	nc := testutil.Connect(b, url)
	js := testutil.JetStream(b, nc)
	br, err := bridge.New(bridge.Config{}, testutil.Connect(b, url), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Close)
	hs := httptest.NewServer(br)
	b.Cleanup(hs.Close)
	bl := newBare(b, model, w, parallel, contextSize, threads)
	return &rig{model: model, parallel: parallel, threads: threads, paths: []path{
		bl.path(), enginePath(eng, w), natsPath(nc, js, w), ssePath(hs.URL, w),
	}}
}

type key struct {
	path string
	jobs int
}

// stats gathers, round by round, what one path gave for one number of
// jobs, and its ratios to the same round's bare llama.cpp.
type stats struct {
	rate, vsBare, gain, vsBareGain []float64
	decode, decodeVsBare           []float64 // tokens/s once every job generates
	decodeVsBareGain               []float64 // the gain over 1 job by decode rate, against bare's
	ttft, addedTTFT, spread, cpu   []time.Duration
	ttftAll                        []time.Duration // every job's, for p99
}

// measure runs every path for each number of jobs, rounds times after a
// warm-up round, and returns the stats. Each round runs every path back to
// back and each ratio is taken within its round: the machine's noise
// comes and goes slower than a round, so paired ratios vary far less than
// separate medians. The order changes from round to round (see order): a
// path pays for what ran just before it, a quiet moment (waking the idle
// core) or another llama.cpp context (the caches it filled).
func (rg *rig) measure(b *testing.B, jobCounts []int, rounds int) map[key]*stats {
	out := map[key]*stats{}
	for round := range rounds + 1 {
		got := map[key]*run{}
		for _, n := range jobCounts {
			for _, i := range order(len(rg.paths), round) {
				p := rg.paths[i]
				before := cpuTime()
				r := p.run(b, n)
				r.cpu = cpuTime() - before
				got[key{p.name, n}] = r
			}
		}
		if round == 0 {
			continue // warm-up
		}
		bareName := rg.paths[0].name
		for k, r := range got {
			s := out[k]
			if s == nil {
				s = &stats{}
				out[k] = s
			}
			bare := got[key{bareName, k.jobs}]
			one := got[key{k.path, jobCounts[0]}]
			bareOne := got[key{bareName, jobCounts[0]}]
			s.rate = append(s.rate, r.rate())
			s.vsBare = append(s.vsBare, r.rate()/bare.rate())
			s.gain = append(s.gain, r.rate()/one.rate())
			s.vsBareGain = append(s.vsBareGain, (r.rate()/one.rate())/(bare.rate()/bareOne.rate()))
			s.decode = append(s.decode, r.decodeRate())
			s.decodeVsBare = append(s.decodeVsBare, r.decodeRate()/bare.decodeRate())
			s.decodeVsBareGain = append(s.decodeVsBareGain,
				(r.decodeRate()/one.decodeRate())/(bare.decodeRate()/bareOne.decodeRate()))
			s.ttft = append(s.ttft, r.ttft())
			s.addedTTFT = append(s.addedTTFT, r.ttft()-bare.ttft())
			s.spread = append(s.spread, r.spread())
			s.cpu = append(s.cpu, r.cpu/time.Duration(r.total()))
			for _, f := range r.first {
				s.ttftAll = append(s.ttftAll, f.Sub(r.start))
			}
		}
	}
	return out
}

// order is the order in which n paths run in a round: the rows of a
// Williams design, in which, over n rounds (2n when n is odd), every path
// runs first once and runs right after every other path once. A plain
// rotation would always run each path after the same one.
func order(n, round int) []int {
	row := make([]int, n)
	for j := range n {
		// 0, 1, n-1, 2, n-2, …
		if j%2 == 1 {
			row[j] = (j + 1) / 2
		} else {
			row[j] = (n - j/2) % n
		}
	}
	for j := range row {
		row[j] = (row[j] + round) % n
	}
	if n%2 == 1 && round/n%2 == 1 {
		slices.Reverse(row)
	}
	return row
}

// print writes the table of measure's stats, and returns it.
func (rg *rig) print(b *testing.B, title string, jobCounts []int, rounds int, st map[key]*stats) string {
	var out strings.Builder
	fmt.Fprintf(&out, "\n%s: %s, %d llama.cpp thread(s), %d slots, GOMAXPROCS %d, medians of %d rounds, load %s\n\n",
		title, modelName(rg.model), rg.threads, rg.parallel, runtime.GOMAXPROCS(0), rounds, loadAverage())
	fmt.Fprintf(&out, "| path | jobs | tokens/s (all jobs) | vs bare | gain over 1 job | gain vs bare's | TTFT p50 | TTFT p99 | TTFT added to bare's | first-token spread | CPU per token |\n")
	fmt.Fprintf(&out, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range jobCounts {
		for _, p := range rg.paths {
			s := st[key{p.name, n}]
			name := p.name
			if name == rg.paths[0].name && n > 1 {
				name = "bare llama.cpp, batched"
			}
			fmt.Fprintf(&out, "| %s | %d | %.0f | %.1f%% | %.2f× | %.1f%% | %.1f ms | %.1f ms | %+.2f ms | %.1f ms | %.0f µs |\n",
				name, n, median(s.rate), 100*median(s.vsBare), median(s.gain), 100*median(s.vsBareGain),
				ms(median(s.ttft)), ms(percentile(s.ttftAll, 0.99)), ms(median(s.addedTTFT)), ms(median(s.spread)),
				float64(median(s.cpu))/1e3)
		}
	}
	fmt.Print(out.String())
	return out.String()
}

// spread is how far apart the jobs' first tokens came: zero when all
// started in the same decode step.
func (r *run) spread() time.Duration {
	lo, hi := r.first[0], r.first[0]
	for _, f := range r.first {
		if f.Before(lo) {
			lo = f
		}
		if f.After(hi) {
			hi = f
		}
	}
	return hi.Sub(lo)
}

func percentile(v []time.Duration, p float64) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkPaths prints the side-by-side table on the shared test model,
// where per-token costs show. Run it once (-benchtime=1x); BENCH_ROUNDS
// sets the rounds (default 11) and BENCH_THREADS llama.cpp's threads
// (default 1, the same on every path).
func BenchmarkPaths(b *testing.B) {
	rounds := envInt("BENCH_ROUNDS", 11)
	jobCounts := []int{1, 4, 8}
	rg := newRig(b, testutil.ModelPath(b), 8, 512, workload{prompt: "Once upon a time", maxTokens: 200})
	st := rg.measure(b, jobCounts, rounds)
	b.StopTimer()
	rg.print(b, "200 tokens a job, greedy", jobCounts, rounds, st)
	rg.targets(b, st)
}

// targets prints the targets against the measured ratios.
func (rg *rig) targets(b *testing.B, st map[key]*stats) {
	nats1 := median(st[key{"NATS subscriber", 1}].vsBare)
	sse1 := median(st[key{"SSE client", 1}].vsBare)
	sseTTFT := median(st[key{"SSE client", 1}].addedTTFT)
	fmt.Printf("\nTargets (ratios taken within each round, against bare llama.cpp):\n")
	fmt.Printf("- NATS path: %.1f%% of bare llama.cpp's single-job tokens/s (target ≥ 95%%)\n", 100*nats1)
	fmt.Printf("- SSE path: %.1f%% of bare llama.cpp's single-job tokens/s (target ≥ 95%%)\n", 100*sse1)
	fmt.Printf("- SSE adds %.2f ms to bare llama.cpp's time to first token, p50 (target ≤ 2 ms)\n", ms(sseTTFT))
	b.ReportMetric(100*nats1, "nats-%-of-bare")
	b.ReportMetric(100*sse1, "sse-%-of-bare")
	b.ReportMetric(ms(sseTTFT), "sse-ttft-added-ms")
}

// BenchmarkGreedy shows what skipping llama.cpp's sampler chain when
// greedy is worth: the engine as jobs use it (argmax of the logits)
// against the engine sampling the same tokens through the chain (top-k 1
// at temperature 1), beside bare llama.cpp.
func BenchmarkGreedy(b *testing.B) {
	rounds := envInt("BENCH_ROUNDS", 11)
	w := workload{prompt: "Once upon a time", maxTokens: 200}
	model := testutil.ModelPath(b)
	eng, err := engine.Load(engine.Config{ModelPath: model, Parallel: 8, ContextSize: 512, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	chain := engine.Sampling{Temperature: 1, TopK: 1, TopP: 1, RepetitionPenalty: 1}
	rg := &rig{model: model, parallel: 8, threads: 1, paths: []path{
		newBare(b, model, w, 8, 512, 1).path(), enginePath(eng, w), engineSampling("engine, sampler chain", eng, w, chain),
	}}
	st := rg.measure(b, []int{1, 8}, rounds)
	b.StopTimer()
	rg.print(b, "greedy: argmax against llama.cpp's sampler chain", []int{1, 8}, rounds, st)
}
