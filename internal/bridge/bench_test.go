package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
)

// The scale of BenchmarkBridgeScale.
const (
	idleStreams   = 1000
	activeStreams = 100
	tokensPerJob  = 50
	tokenInterval = 20 * time.Millisecond // 50 tokens/s per active job, 5,000 events/s in all
)

// BenchmarkBridgeScale holds 1,000 idle and 100 active streams on one
// bridge (one NATS connection) and reports the memory each stream costs and
// the delivery latency of the active ones, from a token's publication to
// its arrival at the SSE client. Run it once:
//
//	go test -run '^$' -bench BridgeScale -benchtime 1x ./internal/bridge/
//
// All traffic stays on 127.0.0.1.
func BenchmarkBridgeScale(b *testing.B) {
	raiseFileLimit(b, 4*(idleStreams+activeStreams)+256)
	for range b.N {
		benchScale(b)
	}
}

func benchScale(b *testing.B) {
	h := startBridge(b, bridge.Config{})
	ctx := context.Background()
	for i := range idleStreams + activeStreams {
		h.script(fmt.Sprintf("job%d", i)).started()
	}
	before := memory()

	// Idle streams: raw connections that read their started event and then
	// nothing, so that the client side costs no goroutine and no buffer.
	start := time.Now()
	var conns []net.Conn
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	addr := strings.TrimPrefix(h.URL, "http://")
	for i := range idleStreams {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /v1/jobs/job%d/events HTTP/1.1\r\nHost: bridge\r\n\r\n", i)
	}
	for _, c := range conns {
		if err := readUntil(c, "event: started"); err != nil {
			b.Fatal(err)
		}
	}
	opened := time.Since(start)
	after := memory()
	perStream := float64(after.bytes-before.bytes) / idleStreams
	goroutines := float64(after.goroutines-before.goroutines) / idleStreams

	// Active streams: SSE clients that time each token's arrival.
	lat := make([][]time.Duration, activeStreams)
	var wg sync.WaitGroup
	ready := make(chan struct{}, activeStreams)
	for i := range activeStreams {
		id := fmt.Sprintf("job%d", idleStreams+i)
		_, r := h.openStream(ctx, http.DefaultClient, "/v1/jobs/"+id+"/events")
		wg.Go(func() {
			lat[i] = receive(b, r, ready)
		})
	}
	for range activeStreams {
		<-ready
	}
	tick := time.NewTicker(tokenInterval)
	for n := range tokensPerJob {
		<-tick.C
		for i := range activeStreams {
			id := fmt.Sprintf("job%d", idleStreams+i)
			data, _ := json.Marshal(&jobs.Token{Header: jobs.Header{Type: jobs.TypeToken, JobID: id, Seq: uint64(n + 2), TS: time.Now()}, T: "x", I: n})
			if _, err := h.js.PublishAsync(jobs.EventsSubject(id), data); err != nil {
				b.Fatal(err)
			}
		}
	}
	tick.Stop()
	for i := range activeStreams {
		id := fmt.Sprintf("job%d", idleStreams+i)
		data, _ := json.Marshal(&jobs.End{Header: jobs.Header{Type: jobs.TypeEnd, JobID: id, Seq: tokensPerJob + 2, TS: time.Now()}, TokensOut: tokensPerJob, StopReason: jobs.StopMaxTokens})
		if _, err := h.js.PublishAsync(jobs.EventsSubject(id), data); err != nil {
			b.Fatal(err)
		}
	}
	<-h.js.PublishAsyncComplete()
	wg.Wait()

	all := slices.Concat(lat...)
	if len(all) != activeStreams*tokensPerJob {
		b.Fatalf("%d tokens arrived; want %d", len(all), activeStreams*tokensPerJob)
	}
	slices.Sort(all)
	p50, p99 := all[len(all)/2], all[len(all)*99/100]
	b.ReportMetric(perStream/1024, "KiB/stream")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	fmt.Fprintf(os.Stdout, "\nbridge at scale: %d idle + %d active SSE streams, one NATS connection\n", idleStreams, activeStreams)
	fmt.Fprintf(os.Stdout, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(os.Stdout, "| %d idle streams opened (request to first event) | %v |\n", idleStreams, opened.Round(time.Millisecond))
	fmt.Fprintf(os.Stdout, "| memory per idle stream (the bridge's Go heap + stacks; NATS holds nothing per stream) | %.1f KiB |\n", perStream/1024)
	fmt.Fprintf(os.Stdout, "| goroutines per idle stream | %.1f |\n", goroutines)
	fmt.Fprintf(os.Stdout, "| active streams' token delivery, publish to SSE client, p50 | %v |\n", p50.Round(time.Microsecond))
	fmt.Fprintf(os.Stdout, "| p99 | %v |\n", p99.Round(time.Microsecond))
	fmt.Fprintf(os.Stdout, "| tokens delivered | %d (%d streams × %d, every %v) |\n\n", len(all), activeStreams, tokensPerJob, tokenInterval)
}

// receive reads a stream to its end and returns each token's delivery
// latency; it says ready once the stream has its started event.
func receive(b *testing.B, r *sseReader, ready chan<- struct{}) []time.Duration {
	var out []time.Duration
	for {
		m, err := r.next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			b.Error(err)
			return out
		}
		now := time.Now()
		switch m.Type {
		case "started":
			ready <- struct{}{}
		case "token":
			var h jobs.Header
			if err := json.Unmarshal(m.Data, &h); err != nil {
				b.Error(err)
				return out
			}
			out = append(out, now.Sub(h.TS))
		}
	}
}

// readUntil reads c until s has come.
func readUntil(c net.Conn, s string) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", s, err)
		}
		if strings.HasPrefix(line, s) {
			return nil
		}
	}
}

type mem struct {
	bytes      uint64
	goroutines int
}

// memory is the process's Go memory in use, heap and stacks, after a GC.
func memory() mem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return mem{bytes: m.HeapInuse + m.StackInuse, goroutines: runtime.NumGoroutine()}
}

// raiseFileLimit lifts the soft limit on open files to at least n, or
// skips the benchmark when the hard limit is lower.
func raiseFileLimit(b *testing.B, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		b.Skipf("needs %d open files; the hard limit is %d", n, lim.Max)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
}
