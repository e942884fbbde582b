package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/narrated/llmworker/internal/discovery"
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// gatedEngine holds every generation until its gate opens, so a test can
// look at a worker while a job runs; entered tells when one waits.
type gatedEngine struct {
	worker.Engine
	gate    chan struct{}
	entered chan string
}

func (g gatedEngine) Generate(ctx context.Context, req engine.Request, hooks engine.Hooks) (engine.Result, error) {
	g.entered <- ""
	select {
	case <-g.gate:
	case <-ctx.Done():
	}
	return g.Engine.Generate(ctx, req, hooks)
}

// Workers are found through the micro protocol's subjects, as `nats micro
// ls/info/stats` use them; the status endpoint tells what runs and what
// waits; a stopped worker is gone.
func TestDiscovery(t *testing.T) {
	e := setup(t)
	real, err := engine.Load(engine.Config{ModelPath: testutil.ModelPath(t), Parallel: 1, ContextSize: 128, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(real.Close)
	gated := gatedEngine{Engine: real, gate: make(chan struct{}), entered: make(chan string, 2)}
	gpu := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "gpu-1", Pool: "gpu", Parallel: 1, Engine: gated})
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "cpu-1"})

	pings := request[micro.Ping](t, e.nc, "$SRV.PING."+discovery.Service)
	if len(pings) != 2 || pings[0].Type != micro.PingResponseType {
		t.Fatalf("pings %+v, want two", pings)
	}
	workers, err := discovery.Workers(context.Background(), e.nc)
	if err != nil {
		t.Fatal(err)
	}
	want := []discovery.Instance{
		{WorkerID: "cpu-1", Model: "stories260K", Pool: "", Slots: 4, ContextSize: 512},
		{WorkerID: "gpu-1", Model: "stories260K", Pool: "gpu", Slots: 1, ContextSize: 128},
	}
	if len(workers) != 2 || workers[0].Instance != want[0] || workers[1].Instance != want[1] || workers[0].ServiceID == "" {
		t.Fatalf("workers %+v, want %+v", workers, want)
	}
	models := discovery.Models(workers)
	if pools := models["stories260K"]; len(models) != 1 || len(pools) != 2 || pools[0] != "" || pools[1] != "gpu" {
		t.Errorf("models %v", models)
	}

	testutil.Submit(t, e.js, jobs.ExecuteSubjectFor("gpu"), greedyJob("held", "Once", 5))
	<-gated.entered
	testutil.Submit(t, e.js, jobs.ExecuteSubjectFor("gpu"), greedyJob("behind", "Once", 5))
	// The server counts a stored job as pending a moment after it acks it:
	// ask again until it does.
	var statuses []discovery.Status
	for deadline := time.Now().Add(10 * time.Second); ; {
		statuses, err = discovery.Statuses(context.Background(), e.nc)
		if err != nil || len(statuses) != 2 {
			t.Fatalf("statuses %+v, %v", statuses, err)
		}
		if statuses[1].Queued == 1 || time.Now().After(deadline) {
			break
		}
	}
	cpu, held := statuses[0], statuses[1]
	if held.WorkerID != "gpu-1" || held.Busy != 1 || len(held.JobsRunning) != 1 || held.JobsRunning[0] != "held" || held.Queued != 1 || held.Slots != 1 || held.Model != "stories260K" {
		t.Errorf("gpu-1 status %+v, want held running and one queued", held)
	}
	if cpu.WorkerID != "cpu-1" || cpu.Busy != 0 || cpu.JobsRunning == nil || cpu.Queued != 0 {
		t.Errorf("cpu-1 status %+v, want idle", cpu)
	}
	close(gated.gate)
	testutil.Events(t, e.js, "held", 30*time.Second)
	testutil.Events(t, e.js, "behind", 30*time.Second)

	for _, st := range request[micro.Stats](t, e.nc, "$SRV.STATS."+discovery.Service) {
		if len(st.Endpoints) != 1 || st.Endpoints[0].Subject != discovery.StatusSubject || st.Endpoints[0].NumRequests < 1 {
			t.Errorf("stats of %s: %+v, want the status endpoint asked", st.Metadata["worker_id"], st.Endpoints)
		}
	}

	gpu.Stop(t)
	workers, err = discovery.Workers(context.Background(), e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(workers) != 1 || workers[0].WorkerID != "cpu-1" {
		t.Errorf("after gpu-1 stopped: %+v", workers)
	}
}

// request gathers every reply to an empty request on subject, as the nats
// CLI does: until no reply came for a while.
func request[T any](t *testing.T, nc *nats.Conn, subject string) []T {
	t.Helper()
	sub, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, sub.Subject, nil); err != nil {
		t.Fatal(err)
	}
	var out []T
	for wait := 10 * time.Second; ; wait = 500 * time.Millisecond {
		msg, err := sub.NextMsg(wait)
		if err != nil {
			return out
		}
		var v T
		if err := json.Unmarshal(msg.Data, &v); err != nil {
			t.Fatalf("%s: %v: %s", subject, err, msg.Data)
		}
		out = append(out, v)
	}
}
