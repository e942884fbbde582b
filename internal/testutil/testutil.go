// Package testutil holds what the integration tests of every package share:
// the path to the shared model, and a real embedded NATS server.
package testutil

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/natsserver"
)

// ModelPath locates the shared test model: $MODEL_PATH, or
// ../shared/models/stories260K.gguf from the repository root. Outside CI a
// missing model skips the test with a clear message; in CI (CI=true) it
// fails it.
func ModelPath(t testing.TB) string {
	t.Helper()
	path := os.Getenv("MODEL_PATH")
	if path == "" {
		path = filepath.Join(RepoRoot(), "..", "shared", "models", "stories260K.gguf")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test model missing in CI: %v", err)
		}
		t.Skipf("test model missing (set MODEL_PATH): %v", err)
	}
	return path
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// StartNATS runs an embedded JetStream server on a free loopback port for
// the test and returns its URL. It is shut down when the test ends.
func StartNATS(t testing.TB) (*server.Server, string) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv, srv.ClientURL()
}

// Connect opens a NATS connection for the test, closed when it ends.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
