package main

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// binWorker is the worker binary running for a test.
type binWorker struct {
	cmd    *exec.Cmd
	stdout *testutil.SyncBuffer
}

func startBinWorker(t *testing.T, url, id string, args ...string) *binWorker {
	t.Helper()
	w := &binWorker{stdout: &testutil.SyncBuffer{}}
	w.cmd = workerCmd(append([]string{"-model", testutil.ModelPath(t), "-nats", url, "-threads", "1",
		"-ctx-size", "2048", "-worker-id", id}, args...)...)
	w.cmd.Stdout = w.stdout
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGCONT)
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	w.waitFor(t, `"action":"ready"`)
	return w
}

func (w *binWorker) waitFor(t *testing.T, s string) {
	t.Helper()
	if !w.stdout.WaitFor(s, time.Minute) {
		t.Fatalf("worker stdout lacks %s:\n%s", s, w.stdout.Bytes())
	}
}

// A worker paused past the ack wait (SIGSTOP here; a GC pause or a frozen
// VM alike) loses its job to another worker. Resumed, it gets no event of
// its into the job after the new owner's started: it notices, stops the
// job, says job_lost on stdout only, and goes on serving.
func TestStalledWorkerLosesItsJob(t *testing.T) {
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	js := testutil.JetStream(t, nc)
	events, err := nc.SubscribeSync(jobs.EventsSubject("stalled-job"))
	if err != nil {
		t.Fatal(err)
	}
	stalled := startBinWorker(t, url, "stalled", "-ack-wait", "2s")
	testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "stalled-job", "prompt": "Once upon a time",
		"max_tokens": 1800, "temperature": 0, "seed": 1})
	awaitEvent(t, events, `"type":"token"`)
	stalled.cmd.Process.Signal(syscall.SIGSTOP)
	heir := startBinWorker(t, url, "heir", "-ack-wait", "2s")
	awaitEvent(t, events, `"worker_id":"heir"`)
	stalled.cmd.Process.Signal(syscall.SIGCONT)
	stalled.waitFor(t, `"action":"job_lost"`)

	stored := testutil.Stored(t, js, "stalled-job")
	testutil.CheckStory(t, "stalled-job", stored)
	var owners []string
	for _, ev := range stored {
		if st, ok := ev.(*jobs.Started); ok {
			owners = append(owners, st.WorkerID)
		}
	}
	if len(owners) != 2 || owners[1] != "heir" {
		t.Fatalf("started by %v, want stalled then heir", owners)
	}
	if end, ok := stored[len(stored)-1].(*jobs.End); !ok || end.TokensOut != 1800 {
		t.Fatalf("the job ended with %+v", stored[len(stored)-1])
	}

	// The stalled worker serves on: with the heir gone, it runs the next job.
	heir.cmd.Process.Signal(syscall.SIGTERM)
	heir.cmd.Wait()
	testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "after-stall", "prompt": "Once", "max_tokens": 4})
	after := testutil.Stored(t, js, "after-stall")
	testutil.CheckStory(t, "after-stall", after)
	if st, ok := after[0].(*jobs.Started); !ok || st.WorkerID != "stalled" {
		t.Fatalf("the next job started with %+v", after[0])
	}
}

func awaitEvent(t *testing.T, sub *nats.Subscription, want string) {
	t.Helper()
	for {
		msg, err := sub.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("no event with %s: %v", want, err)
		}
		if strings.Contains(string(msg.Data), want) {
			return
		}
	}
}
