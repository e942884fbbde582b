package faults_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// TestSoak is `make soak` (SOAK=1; not in CI): SOAK_JOBS jobs (2000) at
// concurrency 8 through the bridge on a three-node R3 cluster, clients
// dropping their streams at random and resuming, while one worker is
// SIGKILLed, one SIGSTOPped past the ack wait and resumed, and one NATS
// node killed and restarted. It prints the table the README quotes.
func TestSoak(t *testing.T) {
	if os.Getenv("SOAK") == "" {
		t.Skip("the soak runs with SOAK=1 (make soak)")
	}
	total := 2000
	if n, err := strconv.Atoi(os.Getenv("SOAK_JOBS")); err == nil && n > 0 {
		total = n
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	build.Dir = testutil.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the worker: %v\n%s", err, out)
	}
	c, urls, _, bridgeURL := startClusterWithBridge(t)
	const ackWait = 3 * time.Second
	workers := map[string]*exec.Cmd{}
	for _, id := range []string{"killed", "stalled", "steady"} {
		workers[id] = startSoakWorker(t, bin, urls, id, ackWait)
	}
	rssStart := rss(workers["steady"].Process.Pid)

	var done atomic.Int64
	ids := make(chan int)
	results := make([]soakResult, total)
	var clients sync.WaitGroup
	for range 8 {
		clients.Go(func() {
			for i := range ids {
				results[i] = soakJob(bridgeURL, fmt.Sprintf("soak-%d", i), 20+rand.IntN(60))
				done.Add(1)
			}
		})
	}
	faults := []struct {
		at   float64
		what string
		do   func()
	}{
		{0.2, "SIGKILL worker killed", func() { workers["killed"].Process.Kill() }},
		{0.4, "SIGSTOP worker stalled past the ack wait", func() {
			workers["stalled"].Process.Signal(syscall.SIGSTOP)
			time.AfterFunc(ackWait+2*time.Second, func() { workers["stalled"].Process.Signal(syscall.SIGCONT) })
		}},
		{0.6, "kill NATS node 2, restart it 5 s later", func() {
			c.Kill(1)
			time.AfterFunc(5*time.Second, func() { c.Start(1) })
		}},
	}
	start := time.Now()
	go func() {
		defer close(ids)
		for i := range total {
			ids <- i
		}
	}()
	for _, f := range faults {
		for float64(done.Load()) < f.at*float64(total) {
			time.Sleep(50 * time.Millisecond) // progress is a counter; nothing to wait on
		}
		t.Logf("%s after %d jobs", f.what, done.Load())
		f.do()
	}
	clients.Wait()
	elapsed := time.Since(start)
	rssEnd := rss(workers["steady"].Process.Pid)
	c.WaitStreams(jobs.QueueStream, jobs.EventsStream)

	checkJS, err := jetstream.New(testutil.Connect(t, urls))
	if err != nil {
		t.Fatal(err)
	}
	var ended, lost, broken, complete, resumed, incomplete int
	var ttfts []time.Duration
	for i, r := range results {
		stored := readStored(t, checkJS, fmt.Sprintf("soak-%d", i))
		if len(stored) == 0 || !stored[len(stored)-1].Head().Type.Terminal() {
			lost++
			continue
		}
		ended++
		if !oneStory(stored) {
			broken++
		}
		if len(r.events) == len(stored) && slices.EqualFunc(r.events, stored, func(a sse, b jobs.Event) bool {
			return a.id == b.Head().Seq && a.typ == string(b.Head().Type)
		}) {
			complete++
		} else if incomplete++; incomplete <= 5 {
			t.Logf("job %d: the client got %d events (%d resumes), %d stored; first difference %s", i, len(r.events), r.resumes, len(stored), firstDiff(r.events, stored))
		}
		if r.resumes > 0 {
			resumed++
		}
		if r.ttft > 0 {
			ttfts = append(ttfts, r.ttft)
		}
	}
	slices.Sort(ttfts)
	p99 := time.Duration(0)
	if len(ttfts) > 0 {
		p99 = ttfts[len(ttfts)*99/100]
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nsoak: %d jobs at concurrency 8 through the bridge, three-node R3 cluster, %s\n\n", total, elapsed.Round(time.Second))
	fmt.Fprintf(&out, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&out, "| jobs submitted | %d |\n| jobs ended | %d |\n| jobs lost | %d |\n", total, ended, lost)
	fmt.Fprintf(&out, "| jobs whose stored events are not one story (lost, duplicated or out of order) | %d |\n", broken)
	fmt.Fprintf(&out, "| client streams complete (every stored event, in order) | %d of %d (%d resumed after a drop) |\n", complete, total, resumed)
	fmt.Fprintf(&out, "| worker RSS at start / end | %d MiB / %d MiB |\n", rssStart>>20, rssEnd>>20)
	fmt.Fprintf(&out, "| time to first token, p99 | %s |\n", p99.Round(time.Millisecond))
	fmt.Print(out.String())
	if lost > 0 || broken > 0 || complete != total {
		t.Errorf("lost %d, broken %d, complete %d of %d", lost, broken, complete, total)
	}
}

func startSoakWorker(t *testing.T, bin, urls, id string, ackWait time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "-model", testutil.ModelPath(t), "-nats", urls, "-worker-id", id, "-threads", "1",
		"-parallel", "4", "-ctx-size", "512", "-replicas", "3", "-ack-wait", ackWait.String(), "-log", "json")
	out := &testutil.SyncBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	if !out.WaitFor(`"action":"ready"`, time.Minute) {
		t.Fatalf("worker %s not ready:\n%s", id, out.Bytes())
	}
	return cmd
}

// rss is a process's resident memory in bytes.
func rss(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// oneStory is testutil.CheckStory as a verdict.
func oneStory(events []jobs.Event) bool {
	for i, ev := range events {
		h := ev.Head()
		if h.Seq != uint64(i+1) || (h.Type.Terminal() && i != len(events)-1) {
			return false
		}
	}
	return true
}

type soakResult struct {
	events  []sse
	resumes int
	ttft    time.Duration
}

// soakJob submits a job and follows it to its end, dropping its stream
// at random (a third of the jobs) and resuming with Last-Event-ID.
func soakJob(base, id string, maxTokens int) soakResult {
	var r soakResult
	body := fmt.Sprintf(`{"job_id":%q,"prompt":"Once upon a time","max_tokens":%d,"cancel_on_disconnect":false}`, id, maxTokens)
	start := time.Now()
	dropAt := -1
	if rand.IntN(3) == 0 {
		dropAt = 1 + rand.IntN(maxTokens)
	}
	submitted := false
	for time.Since(start) < 5*time.Minute {
		var req *http.Request
		if !submitted {
			req, _ = http.NewRequest(http.MethodPost, base+"/v1/jobs", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req, _ = http.NewRequest(http.MethodGet, base+"/v1/jobs/"+id+"/events", nil)
			if len(r.events) > 0 {
				req.Header.Set("Last-Event-ID", strconv.FormatUint(r.events[len(r.events)-1].id, 10))
			}
		}
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if resp.StatusCode == http.StatusConflict && !submitted {
			submitted = true
			resp.Body.Close()
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		submitted = true
		limit := -1
		if dropAt >= 0 {
			limit, dropAt = dropAt, -1
		}
		finished := readSome(resp, &r, start, limit)
		resp.Body.Close()
		if finished {
			return r
		}
		r.resumes++
	}
	return r
}

// readSome reads events into r until the terminal one (true), the stream
// breaks, or limit events were read (when limit is not negative): the
// client walks away.
func readSome(resp *http.Response, r *soakResult, start time.Time, limit int) bool {
	var evs []sse
	for _, ev := range readEvents(resp, limit) {
		if ev.typ == string(jobs.TypeToken) && r.ttft == 0 {
			r.ttft = time.Since(start)
		}
		evs = append(evs, ev)
	}
	r.events = append(r.events, evs...)
	n := len(r.events)
	return n > 0 && (r.events[n-1].typ == string(jobs.TypeEnd) || r.events[n-1].typ == string(jobs.TypeError))
}

func firstDiff(got []sse, stored []jobs.Event) string {
	for i := range min(len(got), len(stored)) {
		if got[i].id != stored[i].Head().Seq || got[i].typ != string(stored[i].Head().Type) {
			return fmt.Sprintf("at %d: client %d %s, stored %d %s", i, got[i].id, got[i].typ, stored[i].Head().Seq, stored[i].Head().Type)
		}
	}
	return fmt.Sprintf("none in the first %d", min(len(got), len(stored)))
}
