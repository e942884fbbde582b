package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/narrated/llmworker/internal/testutil"
)

// The test binary doubles as submit (testutil.RunMain).
func TestMain(m *testing.M) { testutil.RunMain(m, main) }

func submitCmd(args ...string) *exec.Cmd {
	cmd := testutil.MainCmd(args...)
	return cmd
}

// submit, given a password in its URL, runs a job without telling it; a
// wrong one stops it with exit 1 and one line on stderr that says so.
func TestSubmitNeverTellsThePassword(t *testing.T) {
	s := testutil.StartSecureNATS(t, testutil.AuthPassword)
	testutil.StartWorkerWith(t, "", testutil.WorkerOptions{NATS: s.Good, Parallel: 1})
	cmd := submitCmd("-prompt", "Once upon a time", "-max-tokens", "8")
	cmd.Env = append(cmd.Env, "NATS_URL="+s.Good.URL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !bytes.Contains(out, []byte("🏁 max_tokens")) {
		t.Fatalf("submit: %v\n%s%s", err, out, stderr.Bytes())
	}
	bad := s.Bad["wrong password"]
	refused := submitCmd("-nats", bad.URL, "-prompt", "Once upon a time")
	var badErr bytes.Buffer
	refused.Stderr = &badErr
	badOut, _ := refused.Output()
	line := strings.TrimSpace(badErr.String())
	if refused.ProcessState.ExitCode() != 1 || strings.Count(line, "\n") != 0 || !strings.Contains(line, "authorization violation") ||
		!strings.Contains(line, "nats://worker:xxxxx@") || strings.Contains(line, "not-the-password") {
		t.Errorf("wrong password: exit %d, stderr %q", refused.ProcessState.ExitCode(), line)
	}
	for name, data := range map[string][]byte{"stdout": out, "stderr": stderr.Bytes(), "refused stdout": badOut} {
		if bytes.Contains(data, []byte(s.Secret)) {
			t.Errorf("%s tells the password:\n%s", name, data)
		}
	}
}
