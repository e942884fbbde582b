package discovery_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/narrated/llmworker/internal/discovery"
	"github.com/narrated/llmworker/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).asyncCallbacksHandler"),
	)
}

// With no worker up, discovery answers at once (NATS says no one
// responds) with an empty list, not an error and not after a timeout.
func TestNoWorkers(t *testing.T) {
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	workers, err := discovery.Workers(ctx, nc)
	if err != nil || len(workers) != 0 {
		t.Fatalf("Workers = %+v, %v", workers, err)
	}
	statuses, err := discovery.Statuses(ctx, nc)
	if err != nil || len(statuses) != 0 {
		t.Fatalf("Statuses = %+v, %v", statuses, err)
	}
	if ctx.Err() != nil {
		t.Error("discovery waited for its deadline")
	}
}

// A version micro refuses (not SemVer) still registers, and the worker's
// own version is kept in the metadata.
func TestRegisterVersions(t *testing.T) {
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	for version, want := range map[string]string{"v1.2.3": "1.2.3", "(devel)": "0.0.0-dev", "": "0.0.0-dev", "v0.0.0-20261202-abcdef": "0.0.0-20261202-abcdef"} {
		svc, err := discovery.Register(nc, discovery.Instance{WorkerID: "w", Model: "m", Version: version}, func(context.Context) discovery.Status { return discovery.Status{} })
		if err != nil {
			t.Fatalf("%q: %v", version, err)
		}
		info := svc.Info()
		if info.Version != want || info.Metadata["version"] != version || info.Name != discovery.Service {
			t.Errorf("%q: info %+v, want version %s", version, info, want)
		}
		if err := svc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
