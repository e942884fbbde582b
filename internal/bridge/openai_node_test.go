package bridge_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/testutil"
)

// nodeClientDir holds the official openai npm client's test: its
// package.json pins the version; npm installs it (make test does, and so
// does this test when it is missing).
var nodeClientDir = filepath.Join("testdata", "openai-node")

// TestOpenAINodeClient runs the official openai npm client, unmodified,
// against a bridge with a real worker (and a bridge with none).
func TestOpenAINodeClient(t *testing.T) {
	node := nodeWithClient(t)
	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	idle := startBridge(t, bridge.Config{})

	cmd := exec.Command(node, "--test", "--test-reporter=spec", "client.test.mjs")
	cmd.Dir = nodeClientDir
	cmd.Env = append(os.Environ(), "LLMW_BRIDGE_URL="+h.URL, "LLMW_IDLE_BRIDGE_URL="+idle.URL, "LLMW_MODEL="+testModel, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test client.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// nodeWithClient finds node, installing the pinned openai package with
// npm ci when it is not there. Outside CI a machine without node skips the
// test; in CI it fails.
func nodeWithClient(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node is missing in CI: %v", err)
		}
		t.Skipf("node is missing (make test installs it): %v", err)
	}
	if _, err := os.Stat(filepath.Join(nodeClientDir, "node_modules", "openai", "package.json")); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("the openai npm package is not installed, and npm is missing: %v", err)
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = testutil.RepoRoot() + "/internal/bridge/" + nodeClientDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", nodeClientDir, err, out)
	}
	return node
}
