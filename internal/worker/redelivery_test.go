package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// stuckEngine generates nothing until its job is cancelled, so a test holds
// a job running for as long as it needs.
type stuckEngine struct{ worker.Engine }

func (stuckEngine) Generate(ctx context.Context, req engine.Request, _ engine.Hooks) (engine.Result, error) {
	<-ctx.Done()
	return engine.Result{Reason: engine.StopCancelled}, nil
}

func loadEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, err := engine.Load(engine.Config{ModelPath: testutil.ModelPath(t), Parallel: 4, ContextSize: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// A job delivered again to the worker that runs it (the queue gave up on
// an acknowledgement) is the same stream message: the copy must not settle
// it, or the running job's own hand-back or ack would find nothing left.
func TestRedeliveryToRunningWorkerKeepsTheJob(t *testing.T) {
	e := setup(t)
	w := testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{Engine: stuckEngine{loadEngine(t)}, AckWait: 3 * time.Second, DrainTimeout: time.Millisecond})
	acks, err := e.nc.SubscribeSync("$JS.ACK." + jobs.QueueStream + ".>")
	if err != nil {
		t.Fatal(err)
	}
	started := awaitStarted(t, e.nc, "held")
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("held", "Once", 5))
	started()
	// The worker says "in progress" on the message's ack subject; a NAK on
	// it delivers the message again, to the same worker.
	progress, err := acks.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no in-progress ack: %v", err)
	}
	if err := e.nc.Publish(progress.Subject, []byte("-NAK")); err != nil {
		t.Fatal(err)
	}
	if !w.Stdout.WaitFor("delivered again while it runs here", 20*time.Second) {
		t.Fatal("the copy never reached the worker")
	}
	// The running job's hand-back must still reach the queue: another
	// worker runs it.
	w.Stop(t)
	testutil.StartWorkerWith(t, e.url, testutil.WorkerOptions{ID: "heir"})
	s := summarize(t, testutil.Events(t, e.js, "held", 30*time.Second))
	if starts := s.starts(); len(starts) != 2 || starts[1].WorkerID != "heir" {
		t.Fatalf("started events %+v", starts)
	}
	if end := s.end(t); end.StopReason != jobs.StopMaxTokens {
		t.Fatalf("end %+v", end)
	}
	waitQueueEmpty(t, e.js)
}

// awaitStarted subscribes to a job's events now; the returned func waits
// for its started event.
func awaitStarted(t *testing.T, nc *nats.Conn, jobID string) func() {
	t.Helper()
	sub, err := nc.SubscribeSync(jobs.EventsSubject(jobID))
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		defer sub.Unsubscribe()
		msg, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("job %s: no started: %v", jobID, err)
		}
		if ev, err := jobs.DecodeEvent(msg.Data); err != nil || ev.Head().Type != jobs.TypeStarted {
			t.Fatalf("job %s: first event %s", jobID, msg.Data)
		}
	}
}
