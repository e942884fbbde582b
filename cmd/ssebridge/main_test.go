package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/testutil"
)

func TestRunServesUntilCancelled(t *testing.T) {
	_, natsURL := testutil.StartNATS(t)
	opts, err := bridge.ParseFlags([]string{"-nats", natsURL, "-listen", "127.0.0.1:0"}, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts, zerolog.New(out)) }()
	if !out.WaitFor(`"ssebridge ready"`, 10*time.Second) {
		t.Fatalf("not ready: %s", out.Bytes())
	}
	var ready struct{ Listen, Message string }
	for line := range bytes.Lines(out.Bytes()) {
		if json.Unmarshal(line, &ready) == nil && ready.Message == "ssebridge ready" {
			break
		}
	}
	// The streams were created, since no worker has run yet.
	resp, err := http.Get("http://" + ready.Listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %s", resp.Status)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
