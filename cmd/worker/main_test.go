package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// The test binary doubles as the worker binary (testutil.RunMain).
func TestMain(m *testing.M) { testutil.RunMain(m, main) }

func workerCmd(args ...string) *exec.Cmd {
	cmd := testutil.MainCmd(args...)
	cmd.Env = append(cmd.Env, "LOG_FORMAT=json")
	return cmd
}

// stdoutLines decodes the zerolog JSON lines of a worker's stdout.
func stdoutLines(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("stdout line is not JSON: %s", line)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestBadModelExitsWithOneClearMessage(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.gguf")
	os.WriteFile(text, []byte("not a model"), 0o644)
	tests := []struct{ path, reason string }{
		{filepath.Join(dir, "missing.gguf"), "no such file or directory"},
		{text, "not a GGUF file"},
		{dir, "not a regular file"},
	}
	for _, tt := range tests {
		cmd := workerCmd("-model", tt.path, "-nats", "nats://127.0.0.1:1")
		out, err := cmd.Output()
		if code := cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("%s: exit %d (%v), want 1", tt.path, code, err)
		}
		var errorsSeen []string
		for _, l := range stdoutLines(t, out) {
			if l["level"] == "error" {
				// The reason travels in the error field, not the message.
				errorsSeen = append(errorsSeen, fmt.Sprint(l["message"], ": ", l["error"]))
			}
		}
		if len(errorsSeen) != 1 || !strings.Contains(errorsSeen[0], tt.path) || !strings.Contains(errorsSeen[0], tt.reason) {
			t.Errorf("%s: error lines %q; want one naming the path and %q", tt.path, errorsSeen, tt.reason)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-parallel", "0"}, {"-pool", "a.b"}, {"-log", "xml"}, {"-threads", "0"}, {"extra"}} {
		cmd := workerCmd(args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), "worker:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

func TestNATSUnreachable(t *testing.T) {
	cmd := workerCmd("-model", testutil.ModelPath(t), "-nats", "nats://127.0.0.1:1", "-threads", "1")
	out, _ := cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 || !bytes.Contains(out, []byte(`"action":"nats_connect_failed"`)) {
		t.Errorf("exit %d, stdout:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// The binary's whole life: lifecycle on stdout and worker.lifecycle, a job
// served, SIGTERM drains and exits 0.
func TestWorkerLifecycle(t *testing.T) {
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	js := testutil.JetStream(t, nc)
	life, err := nc.SubscribeSync(jobs.LifecycleSubject)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, l := freePort(t)
	l.Close()
	cmd := workerCmd("-model", testutil.ModelPath(t), "-nats", url, "-threads", "1", "-ctx-size", "256", "-worker-id", "bin-1",
		"-metrics-listen", metricsAddr)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	var out bytes.Buffer
	readUntil := func(action string) {
		t.Helper()
		for lines.Scan() {
			out.Write(lines.Bytes())
			out.WriteByte('\n')
			if bytes.Contains(lines.Bytes(), []byte(`"action":"`+action+`"`)) {
				return
			}
		}
		t.Fatalf("stdout ended before %s:\n%s", action, out.String())
	}
	readUntil("ready")
	testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "bin-job", "prompt": "Once upon a time", "max_tokens": 8})
	events := testutil.Events(t, js, "bin-job", 30*time.Second)
	if end, ok := events[len(events)-1].(*jobs.End); !ok || end.TokensOut == 0 {
		t.Fatalf("job ended with %+v", events[len(events)-1])
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`llmworker_slots{model="stories260K",pool="default"} 4`, "llmworker_generation_tokens_total", "go_goroutines"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for lines.Scan() {
		out.Write(lines.Bytes())
		out.WriteByte('\n')
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker exit: %v\n%s", err, out.String())
	}

	want := []string{"startup", "device_init", "model_load_start", "model_load_progress", "model_load_complete",
		"nats_connect", "subscribe", "ready", "shutdown"}
	var onStdout, onSubject []string
	for _, l := range stdoutLines(t, out.Bytes()) {
		if a, ok := l["action"].(string); ok {
			onStdout = append(onStdout, a)
			if l["worker_id"] != "bin-1" {
				t.Errorf("stdout line without worker_id: %v", l)
			}
		}
	}
	for {
		msg, err := life.NextMsg(time.Second)
		if err != nil {
			break
		}
		var n jobs.Narration
		json.Unmarshal(msg.Data, &n)
		onSubject = append(onSubject, n.Action)
	}
	for _, action := range want {
		if !slices.Contains(onStdout, action) {
			t.Errorf("stdout lacks %s: %v", action, onStdout)
		}
		if !slices.Contains(onSubject, action) {
			t.Errorf("worker.lifecycle lacks %s: %v", action, onSubject)
		}
	}
	if !slices.Contains(onStdout, "inference_complete") || slices.Contains(onSubject, "inference_complete") {
		t.Errorf("per-request narration: stdout %v, lifecycle %v", onStdout, onSubject)
	}
}

func freePort(t *testing.T) (string, net.Listener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().String(), l
}

// With no -nats the worker embeds a JetStream server that others reach.
func TestEmbeddedServer(t *testing.T) {
	addr, l := freePort(t)
	l.Close()
	cmd := workerCmd("-model", testutil.ModelPath(t), "-threads", "1", "-ctx-size", "256",
		"-embedded-listen", addr, "-data-dir", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !bytes.Contains(lines.Bytes(), []byte(`"action":"ready"`)) {
	}
	nc := testutil.Connect(t, "nats://"+addr)
	js := testutil.JetStream(t, nc)
	testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "embedded", "prompt": "Once", "max_tokens": 4})
	if events := testutil.Events(t, js, "embedded", 30*time.Second); len(events) < 4 {
		t.Errorf("events %+v", events)
	}
	nc.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

func TestEmbeddedPortTaken(t *testing.T) {
	addr, l := freePort(t)
	defer l.Close()
	cmd := workerCmd("-model", testutil.ModelPath(t), "-threads", "1", "-embedded-listen", addr, "-data-dir", t.TempDir())
	out, _ := cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 || !bytes.Contains(out, []byte(`"action":"nats_connect_failed"`)) ||
		!bytes.Contains(out, []byte("address already in use")) {
		t.Errorf("exit %d, stdout:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}
