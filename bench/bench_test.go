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
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
)

// workload is what every path of one table generates: each job the same
// prompt and the same number of tokens, greedy.
type workload struct {
	prompt    string
	maxTokens int
}

// run is one measurement: when each job's first and last token arrived,
// and how many tokens each got, against the moment the jobs were asked for.
type run struct {
	cpu         time.Duration // the process's CPU time over the run
	start       time.Time
	first, last []time.Time
	second      []time.Time
	tokens      []int
}

func newRun(n int) *run {
	return &run{start: time.Now(), first: make([]time.Time, n), second: make([]time.Time, n), last: make([]time.Time, n), tokens: make([]int, n)}
}

func (r *run) token(i int) {
	now := time.Now()
	switch r.tokens[i] {
	case 0:
		r.first[i] = now
	case 1:
		r.second[i] = now
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

// decodeRate is the jobs' tokens per second once every job generates,
// summed: each job's tokens after its second over the time from its second
// token to its last. It leaves out the prompts, however they were fed (a
// loop that feeds them one sequence after another gives every sequence
// its first token then, and its second in the first step they share).
func (r *run) decodeRate() float64 {
	rate := 0.0
	for i, n := range r.tokens {
		if n > 2 {
			rate += float64(n-2) / r.last[i].Sub(r.second[i]).Seconds()
		}
	}
	return rate
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

func (w workload) request(id string) map[string]any {
	return map[string]any{"job_id": id, "prompt": w.prompt, "max_tokens": w.maxTokens, "temperature": 0}
}

// greedy is what a job with temperature 0 asks of the engine.
var greedy = engine.Sampling{TopK: jobs.DefaultTopK, TopP: jobs.DefaultTopP, MinP: jobs.DefaultMinP, RepetitionPenalty: 1}

func enginePath(eng *engine.Engine, w workload) path {
	return engineSampling("engine", eng, w, greedy)
}

func engineSampling(name string, eng *engine.Engine, w workload, s engine.Sampling) path {
	return path{name, func(b *testing.B, n int) *run {
		p, err := eng.Tokenize(w.prompt)
		if err != nil {
			b.Fatal(err)
		}
		r := newRun(n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := eng.Generate(context.Background(), engine.Request{Prompt: p, MaxTokens: w.maxTokens,
					Sampling: s},
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

func natsPath(nc *nats.Conn, js jetstream.JetStream, w workload) path {
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
		// Jobs sent together: all published before any acknowledgement.
		var acks []jetstream.PubAckFuture
		for _, id := range ids {
			data, _ := json.Marshal(w.request(id))
			ack, err := js.PublishAsync(jobs.ExecuteSubject, data)
			if err != nil {
				b.Fatal(err)
			}
			acks = append(acks, ack)
		}
		for _, ack := range acks {
			select {
			case <-ack.Ok():
			case err := <-ack.Err():
				b.Fatal(err)
			}
		}
		wg.Wait()
		return r
	}}
}

func ssePath(base string, w workload) path {
	return path{"SSE client", func(b *testing.B, n int) *run {
		r := newRun(n)
		var wg sync.WaitGroup
		for i := range n {
			body, _ := json.Marshal(w.request(nextID()))
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
