// Package bench measures what a user of the service feels, side by side in
// one run: the raw engine, a subscriber of jobs.events.<id>, and an SSE
// client of the bridge, for one job and for four at once. Run it with
// `make bench`; the machines are shared and noisy, so it interleaves the
// paths round by round and reports medians.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

const (
	maxTokens = 200
	prompt    = "Once upon a time"
)

// run is one measurement: when each job's first and last token arrived,
// and how many tokens each got, against the moment the jobs were asked for.
type run struct {
	cpu         time.Duration // the process's CPU time over the run
	start       time.Time
	first, last []time.Time
	tokens      []int
}

func newRun(n int) *run {
	return &run{start: time.Now(), first: make([]time.Time, n), last: make([]time.Time, n), tokens: make([]int, n)}
}

func (r *run) token(i int) {
	now := time.Now()
	if r.tokens[i] == 0 {
		r.first[i] = now
	}
	r.last[i] = now
	r.tokens[i]++
}

func (r *run) total() int {
	total := 0
	for _, n := range r.tokens {
		total += n
	}
	return max(total, 1)
}

// rate is the aggregate tokens per second, from the request to the last
// token of the last job.
func (r *run) rate() float64 {
	total := 0
	end := r.start
	for i, n := range r.tokens {
		total += n
		if r.last[i].After(end) {
			end = r.last[i]
		}
	}
	return float64(total) / end.Sub(r.start).Seconds()
}

// ttft is the median time to first token of the run's jobs.
func (r *run) ttft() time.Duration {
	var d []time.Duration
	for _, f := range r.first {
		d = append(d, f.Sub(r.start))
	}
	return median(d)
}

func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// paths under test.
type path struct {
	name string
	run  func(b *testing.B, jobs int) *run
}

var seq int

func nextID() string {
	seq++
	return "bench-" + strconv.Itoa(seq)
}

func request(id string) map[string]any {
	return map[string]any{"job_id": id, "prompt": prompt, "max_tokens": maxTokens, "temperature": 0}
}

func rawPath(eng *engine.Engine) path {
	return path{"raw engine", func(b *testing.B, n int) *run {
		p, err := eng.Tokenize(prompt)
		if err != nil {
			b.Fatal(err)
		}
		r := newRun(n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := eng.Generate(context.Background(), engine.Request{Prompt: p, MaxTokens: maxTokens,
					Sampling: engine.Sampling{TopK: jobs.DefaultTopK, TopP: jobs.DefaultTopP, MinP: jobs.DefaultMinP, RepetitionPenalty: 1}},
					engine.Hooks{Piece: func(string, int) { r.token(i) }})
				if err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		return r
	}}
}

func natsPath(nc *nats.Conn, js jetstream.JetStream) path {
	return path{"NATS subscriber", func(b *testing.B, n int) *run {
		ids := make([]string, n)
		var wg sync.WaitGroup
		r := &run{}
		for i := range n {
			ids[i] = nextID()
			wg.Add(1)
			sub, err := nc.Subscribe(jobs.EventsSubject(ids[i]), func(m *nats.Msg) {
				switch {
				case bytes.Contains(m.Data, []byte(`"type":"token"`)):
					r.token(i)
				case bytes.Contains(m.Data, []byte(`"type":"end"`)), bytes.Contains(m.Data, []byte(`"type":"error"`)):
					wg.Done()
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
		}
		nc.Flush()
		*r = *newRun(n)
		for _, id := range ids {
			data, _ := json.Marshal(request(id))
			if _, err := js.Publish(context.Background(), jobs.ExecuteSubject, data); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		return r
	}}
}

func ssePath(base string) path {
	return path{"SSE client", func(b *testing.B, n int) *run {
		r := newRun(n)
		var wg sync.WaitGroup
		for i := range n {
			body, _ := json.Marshal(request(nextID()))
			wg.Go(func() {
				req, _ := http.NewRequest("POST", base+"/v1/jobs", bytes.NewReader(body))
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				lines := bufio.NewScanner(resp.Body)
				for lines.Scan() {
					switch lines.Text() {
					case "event: token":
						r.token(i)
					case "event: end", "event: error":
						return
					}
				}
			})
		}
		wg.Wait()
		return r
	}}
}

// BenchmarkPaths prints the side-by-side table. Run it once
// (-benchtime=1x); BENCH_ROUNDS sets the rounds (default 15) and
// BENCH_THREADS llama.cpp's threads (default 1, the same on every path).
func BenchmarkPaths(b *testing.B) {
	rounds := envInt("BENCH_ROUNDS", 15)
	threads := envInt("BENCH_THREADS", 1)
	_, url := testutil.StartNATS(b)
	eng, err := engine.Load(engine.Config{ModelPath: testutil.ModelPath(b), Parallel: 4, ContextSize: 512, Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	testutil.StartWorkerWith(b, url, testutil.WorkerOptions{Engine: eng, Parallel: 4})
	nc := testutil.Connect(b, url)
	js := testutil.JetStream(b, nc)
	br, err := bridge.New(bridge.Config{}, testutil.Connect(b, url), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Close)
	hs := httptest.NewServer(br)
	b.Cleanup(hs.Close)

	paths := []path{rawPath(eng), natsPath(nc, js), ssePath(hs.URL)}
	type key struct {
		path string
		jobs int
	}
	// Each round runs every path back to back, and each ratio is taken
	// within its round: the machine's noise comes and goes slower than a
	// round, so paired ratios vary far less than separate medians. The
	// order rotates from round to round: whichever path runs first after
	// the quiet of the raw engine's single job pays for waking the idle
	// core (a millisecond or two of time to first token on these VMs).
	rates := map[key][]float64{}
	ttfts := map[key][]time.Duration{}
	cpu := map[key][]time.Duration{}       // CPU time per token
	ratios := map[key][]float64{}          // rate against the same round's raw engine, 1 job
	addedTTFT := map[key][]time.Duration{} // TTFT against the same round's raw engine
	for round := range rounds + 1 {
		got := map[key]*run{}
		for _, n := range []int{1, 4} {
			for i := range paths {
				p := paths[(i+round)%len(paths)]
				before := cpuTime()
				r := p.run(b, n)
				r.cpu = cpuTime() - before
				got[key{p.name, n}] = r
			}
		}
		if round == 0 {
			continue // warm-up
		}
		raw1 := got[key{"raw engine", 1}]
		for k, r := range got {
			rates[k] = append(rates[k], r.rate())
			ttfts[k] = append(ttfts[k], r.ttft())
			cpu[k] = append(cpu[k], r.cpu/time.Duration(r.total()))
			ratios[k] = append(ratios[k], r.rate()/raw1.rate())
			addedTTFT[k] = append(addedTTFT[k], r.ttft()-got[key{"raw engine", k.jobs}].ttft())
		}
	}
	b.StopTimer()

	var out strings.Builder
	fmt.Fprintf(&out, "\n%d tokens a job from %q, greedy, %d llama.cpp thread(s), GOMAXPROCS %d, medians of %d rounds\n\n",
		maxTokens, prompt, threads, runtime.GOMAXPROCS(0), rounds)
	fmt.Fprintf(&out, "| path | jobs at once | tokens/s (all jobs) | vs raw engine, 1 job | time to first token (p50) | added to raw engine's | CPU per token |\n|---|---|---|---|---|---|---|\n")
	for _, n := range []int{1, 4} {
		for _, p := range paths {
			k := key{p.name, n}
			fmt.Fprintf(&out, "| %s | %d | %.0f | %.1f%% | %.2f ms | %+.2f ms | %.0f µs |\n", p.name, n, median(rates[k]),
				100*median(ratios[k]), ms(median(ttfts[k])), ms(median(addedTTFT[k])), float64(median(cpu[k]))/1e3)
		}
	}
	nats1 := median(ratios[key{"NATS subscriber", 1}])
	sse1 := median(ratios[key{"SSE client", 1}])
	var scale []float64
	for i, r4 := range rates[key{"NATS subscriber", 4}] {
		scale = append(scale, r4/rates[key{"NATS subscriber", 1}][i])
	}
	rawScale := median(ratios[key{"raw engine", 4}])
	sseTTFT := median(addedTTFT[key{"SSE client", 1}])
	fmt.Fprintf(&out, "\nTargets (ratios taken within each round):\n")
	fmt.Fprintf(&out, "- NATS path keeps %.1f%% of the raw engine's single-job tokens/s (target ≥ 95%%)\n", 100*nats1)
	fmt.Fprintf(&out, "- 4 jobs at once give %.2f× the single-job throughput over NATS (target ≥ 2×; the raw engine itself gives %.2f×)\n", median(scale), rawScale)
	fmt.Fprintf(&out, "- SSE path keeps %.1f%% of the raw engine's single-job tokens/s (target ≥ 95%%)\n", 100*sse1)
	fmt.Fprintf(&out, "- SSE adds %.2f ms to the raw engine's time to first token, p50 (target ≤ 2 ms)\n", ms(sseTTFT))
	fmt.Print(out.String())
	b.ReportMetric(100*nats1, "nats-%-of-raw")
	b.ReportMetric(median(scale), "x-4-jobs")
	b.ReportMetric(100*sse1, "sse-%-of-raw")
	b.ReportMetric(ms(sseTTFT), "sse-ttft-added-ms")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
