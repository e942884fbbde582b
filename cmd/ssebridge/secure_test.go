package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/testutil"
)

// The test binary doubles as the bridge binary (testutil.RunMain).
func TestMain(m *testing.M) { testutil.RunMain(m, main) }

func bridgeCmd(args ...string) *exec.Cmd {
	cmd := testutil.MainCmd(args...)
	return cmd
}

// startRun runs the bridge's run with args until the test ends and returns
// its address and its stdout.
func startRun(t *testing.T, args ...string) (string, *testutil.SyncBuffer) {
	t.Helper()
	opts, err := bridge.ParseFlags(append(args, "-listen", "127.0.0.1:0"), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts, zerolog.New(out)) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	if !out.WaitFor(`"ssebridge ready"`, 20*time.Second) {
		t.Fatalf("not ready: %s", out.Bytes())
	}
	var ready struct{ Listen, Message string }
	for line := range bytes.Lines(out.Bytes()) {
		if json.Unmarshal(line, &ready) == nil && ready.Message == "ssebridge ready" {
			break
		}
	}
	return "http://" + ready.Listen, out
}

// streamJob submits a job over HTTP and reads its SSE stream to the end.
func streamJob(t *testing.T, base, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/jobs", strings.NewReader(body))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /v1/jobs: %s %s", resp.Status, b)
	}
	var got strings.Builder
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		got.WriteString(lines.Text() + "\n")
		if lines.Text() == "event: end" || lines.Text() == "event: error" {
			lines.Scan()
			got.WriteString(lines.Text() + "\n")
			break
		}
	}
	return got.String()
}

// The bridge and a worker connect to a server that requires each kind of
// credential and run a job end to end; nothing the bridge prints holds the
// secret.
func TestBridgeWithEachCredential(t *testing.T) {
	for _, kind := range testutil.AuthKinds {
		t.Run(kind, func(t *testing.T) {
			s := testutil.StartSecureNATS(t, kind)
			testutil.StartWorkerWith(t, "", testutil.WorkerOptions{NATS: s.Good, Parallel: 1})
			base, out := startRun(t, testutil.NATSArgs(s.Good)...)
			stream := streamJob(t, base, `{"prompt":"Once upon a time","max_tokens":12,"temperature":0}`)
			if !strings.Contains(stream, "event: end") || !strings.Contains(stream, `"stop_reason":"MAX_TOKENS"`) {
				t.Errorf("stream:\n%s", stream)
			}
			for _, secret := range s.Secrets() {
				if bytes.Contains(out.Bytes(), []byte(secret)) || strings.Contains(stream, secret) {
					t.Errorf("the bridge told the secret: %s", out.Bytes())
				}
			}
		})
	}
}

// Credentials the server refuses stop the bridge at start: exit 1 and one
// line that says what was wrong, without the secret.
func TestBridgeRefusedCredentialsStopIt(t *testing.T) {
	for _, kind := range testutil.AuthKinds {
		s := testutil.StartSecureNATS(t, kind)
		for what, bad := range s.Bad {
			cmd := bridgeCmd(append(testutil.NATSArgs(bad), "-listen", "127.0.0.1:0")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			out, _ := cmd.Output()
			timer.Stop()
			lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
			if code := cmd.ProcessState.ExitCode(); code != 1 || len(lines) != 1 || !bytes.Contains(lines[0], []byte(`"level":"fatal"`)) {
				t.Errorf("%s %s: exit %d, stdout:\n%s", kind, what, code, out)
				continue
			}
			var line struct{ Error string }
			json.Unmarshal(lines[0], &line)
			if !strings.Contains(line.Error, "-nats") && !strings.Contains(line.Error, "NATS at") {
				t.Errorf("%s %s: %q does not say what was wrong", kind, what, line.Error)
			}
			for _, secret := range s.Secrets() {
				if bytes.Contains(out, []byte(secret)) || bytes.Contains(stderr.Bytes(), []byte(secret)) {
					t.Errorf("%s %s: the secret was told:\n%s%s", kind, what, out, stderr.Bytes())
				}
			}
		}
	}
}

// The bridge binary, given a password in its URL, never tells it: not on
// stdout or stderr, in /readyz (ready or not), in error responses, in a
// job's events or on the page.
func TestBridgeNeverTellsThePassword(t *testing.T) {
	s := testutil.StartSecureNATS(t, testutil.AuthPassword)
	testutil.StartWorkerWith(t, "", testutil.WorkerOptions{NATS: s.Good, Parallel: 1})
	cmd := bridgeCmd("-nats", s.Good.URL, "-listen", "127.0.0.1:0")
	stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !stdout.WaitFor(`"ssebridge ready"`, 30*time.Second) {
		t.Fatalf("not ready:\n%s%s", stdout.Bytes(), stderr.Bytes())
	}
	var ready struct{ Listen, Message string }
	for line := range bytes.Lines(stdout.Bytes()) {
		if json.Unmarshal(line, &ready) == nil && ready.Message == "ssebridge ready" {
			break
		}
	}
	base := "http://" + ready.Listen
	told := map[string]string{}
	get := func(name, method, path, body string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		told[name] = resp.Status + "\n" + string(data)
	}
	get("the page", "GET", "/", "")
	get("/readyz", "GET", "/readyz", "")
	get("/healthz", "GET", "/healthz", "")
	get("a bad request", "POST", "/v1/jobs", `{"prompt":`)
	get("an unknown job's status", "GET", "/v1/jobs/no-such-job", "")
	get("an unknown job's cancel", "DELETE", "/v1/jobs/no-such-job", "")
	told["a job's events"] = streamJob(t, base, `{"prompt":"Once upon a time","max_tokens":8}`)
	if !strings.Contains(told["/readyz"], "200 OK") || !strings.Contains(told["a bad request"], "400") {
		t.Fatalf("responses: %v", told)
	}

	// NATS goes away: the bridge says so, and /readyz says why, naming
	// neither the server's address nor its password.
	addr := s.Server.Addr().String()
	s.Server.Shutdown()
	if !stdout.WaitFor("nats disconnected", 10*time.Second) {
		t.Fatalf("no disconnect told:\n%s", stdout.Bytes())
	}
	get("/readyz, disconnected", "GET", "/readyz", "")
	if r := told["/readyz, disconnected"]; !strings.Contains(r, "503") || !strings.Contains(r, `"reason"`) || strings.Contains(r, addr) {
		t.Errorf("/readyz while disconnected: %s", r)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	told["stdout"], told["stderr"] = string(stdout.Bytes()), string(stderr.Bytes())
	if !strings.Contains(told["stdout"], natsconn.Redact(s.Good.URL)) {
		t.Errorf("stdout never shows the redacted URL %s:\n%s", natsconn.Redact(s.Good.URL), told["stdout"])
	}
	for name, text := range told {
		if strings.Contains(text, s.Secret) {
			t.Errorf("%s tells the password:\n%s", name, text)
		}
	}
}

// Listening beyond loopback with no -auth-token is warned about at start.
func TestOpenListenerWarns(t *testing.T) {
	_, natsURL := testutil.StartNATS(t)
	for _, tt := range []struct {
		args []string
		warn bool
	}{
		{[]string{"-listen", "0.0.0.0:0"}, true},
		{[]string{"-listen", "0.0.0.0:0", "-auth-token", "t0ken"}, false},
		{[]string{"-listen", "127.0.0.1:0"}, false},
	} {
		opts, err := bridge.ParseFlags(append(tt.args, "-nats", natsURL), func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		out := &testutil.SyncBuffer{}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, opts, zerolog.New(out)) }()
		if !out.WaitFor(`"ssebridge ready"`, 20*time.Second) {
			t.Fatalf("%v: not ready: %s", tt.args, out.Bytes())
		}
		stop()
		<-done
		if warned := bytes.Contains(out.Bytes(), []byte("with no -auth-token")); warned != tt.warn {
			t.Errorf("%v: warned %v, want %v:\n%s", tt.args, warned, tt.warn, out.Bytes())
		}
		if bytes.Contains(out.Bytes(), []byte("t0ken")) {
			t.Errorf("%v: the token was told:\n%s", tt.args, out.Bytes())
		}
	}
}
