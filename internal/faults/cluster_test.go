package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// A three-node cluster with every stream and consumer on three replicas
// loses a node mid-run, twice: first the leader of JOB_EVENTS, then, once
// it is back, the leader of JOBS. Workers and the bridge know all three
// URLs. Every job submitted before, during and after each kill ends with
// a complete, gap-free event sequence, and every SSE client (resuming with
// Last-Event-ID when its stream breaks) receives exactly that sequence.
func TestClusterLosesANode(t *testing.T) {
	c, urls, nc, bridgeURL := startClusterWithBridge(t)
	for _, id := range []string{"w1", "w2"} {
		testutil.StartWorkerWith(t, urls, testutil.WorkerOptions{ID: id, Replicas: 3, AckWait: 5 * time.Second, ContextSize: 1024})
	}

	var clients sync.WaitGroup
	got := map[string][]sse{}
	var mu sync.Mutex
	submit := func(phase string, n int) []string {
		var ids []string
		for i := range n {
			id := fmt.Sprintf("%s-%d", phase, i)
			ids = append(ids, id)
			clients.Go(func() {
				evs := stream(t, bridgeURL, id, 200+20*i)
				mu.Lock()
				got[id] = evs
				mu.Unlock()
			})
		}
		return ids
	}
	kill := func(stream string) int {
		leader := c.StreamLeader(stream)
		if leader < 0 {
			t.Fatalf("no leader for %s", stream)
		}
		t.Logf("killing node %d, leader of %s", leader+1, stream)
		c.Kill(leader)
		return leader
	}

	all := submit("before", 6)
	waitTokens(t, nc)
	down := kill(jobs.EventsStream)
	all = append(all, submit("during", 6)...)
	clients.Wait()
	c.Start(down)
	all = append(all, submit("between", 4)...)
	waitTokens(t, nc)
	down = kill(jobs.QueueStream)
	all = append(all, submit("after", 6)...)
	clients.Wait()
	c.Start(down)
	c.WaitStreams(jobs.QueueStream, jobs.EventsStream)

	check := testutil.Connect(t, urls) // after the kills, on a healthy cluster
	checkJS, err := jetstream.New(check)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range all {
		stored := readStored(t, checkJS, id)
		testutil.CheckStory(t, id, stored)
		seen := got[id]
		if len(seen) != len(stored) {
			t.Errorf("job %s: the client got %d events, %d are stored", id, len(seen), len(stored))
			continue
		}
		for i, ev := range stored {
			if seen[i].id != ev.Head().Seq || seen[i].typ != string(ev.Head().Type) {
				t.Errorf("job %s: the client's event %d is %d %s, stored %d %s", id, i, seen[i].id, seen[i].typ, ev.Head().Seq, ev.Head().Type)
				break
			}
		}
	}
}

// sse is one event as an SSE client saw it.
type sse struct {
	id  uint64
	typ string
}

// startClusterWithBridge starts a three-node cluster with every stream on
// three replicas and a bridge that knows all three URLs; it returns the
// cluster, its URLs, a connection to it and the bridge's base URL.
func startClusterWithBridge(t *testing.T) (*testutil.Cluster, string, *nats.Conn, string) {
	t.Helper()
	c := testutil.StartCluster(t, 3)
	urls := c.URLs()
	nc := testutil.Connect(t, urls)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bridge.CreateMissingStreams(ctx, js, 3); err != nil {
		t.Fatal(err)
	}
	br, err := bridge.New(bridge.Config{}, testutil.Connect(t, urls), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	hs := httptest.NewServer(br)
	t.Cleanup(hs.Close)
	return c, urls, nc, hs.URL
}

// stream submits a job through the bridge and reads its event stream to
// the end, as a careful client would: it submits again while NATS cannot
// take the job (503), and resumes with Last-Event-ID when the stream
// breaks.
func stream(t *testing.T, base, id string, maxTokens int) []sse {
	body := fmt.Sprintf(`{"job_id":%q,"prompt":"Once upon a time","max_tokens":%d,"temperature":0}`, id, maxTokens)
	var evs []sse
	deadline := time.Now().Add(3 * time.Minute)
	submitted := false
	for time.Now().Before(deadline) {
		var req *http.Request
		if !submitted {
			req, _ = http.NewRequest(http.MethodPost, base+"/v1/jobs", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req, _ = http.NewRequest(http.MethodGet, base+"/v1/jobs/"+id+"/events", nil)
			if len(evs) > 0 {
				req.Header.Set("Last-Event-ID", strconv.FormatUint(evs[len(evs)-1].id, 10))
			}
		}
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(200 * time.Millisecond) // a client's pause before it tries again
			continue
		}
		switch {
		case resp.StatusCode == http.StatusConflict && !submitted:
			submitted = true // queued by an earlier try whose answer was lost
			resp.Body.Close()
			continue
		case resp.StatusCode != http.StatusOK:
			resp.Body.Close()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		submitted = true
		done := read(resp, &evs)
		resp.Body.Close()
		if done {
			return evs
		}
	}
	t.Errorf("job %s: no terminal event within 3 minutes (%d events)", id, len(evs))
	return evs
}

// read appends the stream's events to evs; true once the terminal one came.
func read(resp *http.Response, evs *[]sse) bool {
	*evs = append(*evs, readEvents(resp, -1)...)
	n := len(*evs)
	return n > 0 && ((*evs)[n-1].typ == string(jobs.TypeEnd) || (*evs)[n-1].typ == string(jobs.TypeError))
}

// readEvents reads a stream's events (those with an id) until the terminal
// one, the end of the stream, or limit events when limit is not negative.
func readEvents(resp *http.Response, limit int) []sse {
	var evs []sse
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	var cur sse
	for lines.Scan() && len(evs) != limit {
		line := lines.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			cur.typ = line[7:]
		case line == "" && cur.typ != "":
			if cur.id > 0 {
				evs = append(evs, cur)
			}
			if cur.typ == string(jobs.TypeEnd) || cur.typ == string(jobs.TypeError) {
				return evs
			}
			cur = sse{}
		}
	}
	return evs
}

// waitTokens waits until jobs are generating: a token of any job.
func waitTokens(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.SubscribeSync(jobs.EventsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for {
		msg, err := sub.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("no token: %v", err)
		}
		if bytes.Contains(msg.Data, []byte(`"type":"token"`)) {
			return
		}
	}
}

// readStored reads a job's stored events, trying again while the cluster
// settles after the kills.
func readStored(t *testing.T, js jetstream.JetStream, id string) []jobs.Event {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		evs, err := testutil.ReadStored(ctx, js, id)
		cancel()
		if err == nil {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the cluster settles; nothing to wait on
	}
}
