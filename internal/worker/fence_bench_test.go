package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/natsserver"
)

// BenchmarkFencing prints what fencing costs per token on the NATS path:
// the real engine's tokens published as events, as a subscriber of the
// job's subject receives them, side by side in one run, rounds
// interleaved, medians. "unfenced" is how events went out before:
// asynchronous publishes, acknowledgements collected at the end, no
// condition; "fenced" is the publisher: each event on the condition that
// the subject ends with the one before, the next after its
// acknowledgement. BENCH_ROUNDS sets the rounds (default 15).
func BenchmarkFencing(b *testing.B) {
	rounds := 15
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	srv, err := natsserver.Start(natsserver.Config{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := jobs.EnsureStreams(ctx, js, jobs.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	events, err := js.Stream(ctx, jobs.EventsStream)
	if err != nil {
		b.Fatal(err)
	}
	eng, err := engine.Load(engine.Config{ModelPath: benchModel(b), Parallel: 1, ContextSize: 512, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	prompt, err := eng.Tokenize("Once upon a time")
	if err != nil {
		b.Fatal(err)
	}
	const maxTokens = 200
	modes := []struct {
		name string
		sink func(id string) (publish func(jobs.Event), wait func())
	}{
		{"unfenced: async, acks collected at the end (before)", func(id string) (func(jobs.Event), func()) {
			var futures []jetstream.PubAckFuture
			seq := uint64(0)
			return func(ev jobs.Event) {
					seq++
					h := ev.Head()
					h.JobID, h.Seq, h.TS = id, seq, time.Now().UTC()
					data, _ := json.Marshal(ev)
					f, err := js.PublishAsync(jobs.EventsSubject(id), data)
					if err != nil {
						b.Fatal(err)
					}
					futures = append(futures, f)
				}, func() {
					for _, f := range futures {
						select {
						case <-f.Ok():
						case err := <-f.Err():
							b.Fatal(err)
						}
					}
				}
		}},
		{"fenced: each event conditional on the last (after)", func(id string) (func(jobs.Event), func()) {
			p := newPublisher(js, events, id, history{})
			return func(ev jobs.Event) {
				if err := p.publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}, func() {}
		}},
	}
	rates := make([][]float64, len(modes))
	cpu := make([][]time.Duration, len(modes))
	ratios := make([][]float64, len(modes))
	job := 0
	for round := range rounds + 1 {
		got := make([]float64, len(modes))
		for i := range modes {
			m := (i + round) % len(modes)
			job++
			id := "fence-" + strconv.Itoa(job)
			received := make(chan struct{})
			n := 0
			sub, err := nc.Subscribe(jobs.EventsSubject(id), func(msg *nats.Msg) {
				if n++; bytes.Contains(msg.Data, []byte(`"type":"end"`)) {
					close(received)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			nc.Flush()
			before := cpuTime()
			start := time.Now()
			publish, wait := modes[m].sink(id)
			publish(&jobs.Started{Header: jobs.Header{Type: jobs.TypeStarted}})
			res, err := eng.Generate(ctx, engine.Request{Prompt: prompt, MaxTokens: maxTokens,
				Sampling: engine.Sampling{TopK: jobs.DefaultTopK, TopP: 1, MinP: 0, RepetitionPenalty: 1}},
				engine.Hooks{Piece: func(text string, i int) {
					publish(&jobs.Token{Header: jobs.Header{Type: jobs.TypeToken}, T: text, I: i})
				}})
			if err != nil {
				b.Fatal(err)
			}
			publish(&jobs.End{Header: jobs.Header{Type: jobs.TypeEnd}, TokensOut: res.Pieces, StopReason: jobs.StopMaxTokens})
			wait()
			<-received
			elapsed := time.Since(start)
			sub.Unsubscribe()
			if round == 0 {
				continue
			}
			got[m] = float64(res.Pieces) / elapsed.Seconds()
			rates[m] = append(rates[m], got[m])
			cpu[m] = append(cpu[m], (cpuTime()-before)/time.Duration(max(res.Pieces, 1)))
		}
		if round > 0 {
			for m := range modes {
				ratios[m] = append(ratios[m], got[m]/got[0])
			}
		}
	}
	b.StopTimer()
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d tokens from the real engine, one job, one llama.cpp thread, GOMAXPROCS %d, medians of %d rounds\n\n",
		maxTokens, runtime.GOMAXPROCS(0), rounds)
	fmt.Fprintf(&out, "| events published | tokens/s at a subscriber | vs unfenced, same round | CPU per token |\n|---|---|---|---|\n")
	for m := range modes {
		fmt.Fprintf(&out, "| %s | %.0f | %.1f%% | %.0f µs |\n", modes[m].name, median(rates[m]), 100*median(ratios[m]), float64(median(cpu[m]))/1e3)
	}
	fmt.Print(out.String())
	b.ReportMetric(100*median(ratios[1]), "fenced-%-of-unfenced")
}

func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchModel is $MODEL_PATH, or the shared model beside the repository
// (testutil would import this package).
func benchModel(b *testing.B) string {
	path := os.Getenv("MODEL_PATH")
	if path == "" {
		path = "../../../shared/models/stories260K.gguf"
	}
	if _, err := os.Stat(path); err != nil {
		b.Skipf("model missing (set MODEL_PATH): %v", err)
	}
	return path
}
