package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/testutil"
)

// startWorker runs the worker binary with args, its stdout and stderr
// collected, and waits until it is ready.
func startWorker(t *testing.T, args ...string) (*exec.Cmd, *testutil.SyncBuffer, *testutil.SyncBuffer) {
	t.Helper()
	cmd := workerCmd(append([]string{"-model", testutil.ModelPath(t), "-threads", "1", "-ctx-size", "256", "-parallel", "1"}, args...)...)
	stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !stdout.WaitFor(`"action":"ready"`, 60*time.Second) {
		t.Fatalf("worker not ready:\n%s%s", stdout.Bytes(), stderr.Bytes())
	}
	return cmd, stdout, stderr
}

// The worker binary connects to a server that requires each kind of
// credential and runs a job; no secret reaches its stdout, its stderr,
// worker.lifecycle or the job's events, and its URL is shown redacted.
func TestWorkerWithEachCredential(t *testing.T) {
	for _, kind := range testutil.AuthKinds {
		t.Run(kind, func(t *testing.T) {
			s := testutil.StartSecureNATS(t, kind)
			nc := testutil.ConnectWith(t, s.Good)
			life, err := nc.SubscribeSync(jobs.LifecycleSubject)
			if err != nil {
				t.Fatal(err)
			}
			cmd, stdout, stderr := startWorker(t, append(testutil.NATSArgs(s.Good), "-worker-id", "secure-1")...)
			js := testutil.JetStream(t, nc)
			testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "secure-job", "prompt": "Once upon a time", "max_tokens": 8})
			events := testutil.Events(t, js, "secure-job", 30*time.Second)
			if _, ok := events[len(events)-1].(*jobs.End); !ok {
				t.Fatalf("job ended with %+v", events[len(events)-1])
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, stdout.Bytes())
			}
			var told bytes.Buffer
			for {
				msg, err := life.NextMsg(time.Second)
				if err != nil {
					break
				}
				told.Write(msg.Data)
			}
			if !bytes.Contains(told.Bytes(), []byte(`"action":"nats_connect"`)) {
				t.Fatalf("worker.lifecycle lacks nats_connect:\n%s", told.Bytes())
			}
			eventsJSON, _ := json.Marshal(events)
			channels := map[string][]byte{"stdout": stdout.Bytes(), "stderr": stderr.Bytes(), "worker.lifecycle": told.Bytes(), "events": eventsJSON}
			for name, data := range channels {
				for _, secret := range s.Secrets() {
					if bytes.Contains(data, []byte(secret)) {
						t.Errorf("%s tells the secret:\n%s", name, data)
					}
				}
			}
			if want := natsconn.Redact(s.Good.URL); !bytes.Contains(told.Bytes(), []byte("Connected to NATS at "+want)) {
				t.Errorf("nats_connect does not show %s:\n%s", want, told.Bytes())
			}
		})
	}
}

// Credentials the server refuses, or files that are not what they should
// be, stop the worker at start: exit 1 and one error line that says what
// was wrong, without the secret.
func TestWorkerRefusedCredentialsStopIt(t *testing.T) {
	for _, kind := range testutil.AuthKinds {
		s := testutil.StartSecureNATS(t, kind)
		for what, bad := range s.Bad {
			cmd := workerCmd(append([]string{"-model", testutil.ModelPath(t), "-threads", "1", "-ctx-size", "256", "-parallel", "1"}, testutil.NATSArgs(bad)...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, _ := cmd.Output()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("%s %s: exit %d\n%s", kind, what, code, out)
			}
			var errorLines []string
			for _, l := range stdoutLines(t, out) {
				if l["level"] == "error" {
					errorLines = append(errorLines, l["message"].(string))
				}
			}
			if len(errorLines) != 1 || !strings.Contains(errorLines[0], "-nats") && !strings.Contains(errorLines[0], "NATS at") {
				t.Errorf("%s %s: error lines %q; want one that says what was wrong", kind, what, errorLines)
			}
			for _, secret := range s.Secrets() {
				if bytes.Contains(out, []byte(secret)) || bytes.Contains(stderr.Bytes(), []byte(secret)) {
					t.Errorf("%s %s: the secret was told:\n%s%s", kind, what, out, stderr.Bytes())
				}
			}
		}
	}
}
