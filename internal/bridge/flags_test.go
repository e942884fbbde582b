package bridge_test

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/bridge"
)

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o, err := bridge.ParseFlags(nil, env(nil), io.Discard)
	if err != nil || o.NATS.URL != "nats://127.0.0.1:4222" || o.Listen != "127.0.0.1:8080" || !o.EnsureStreams ||
		o.Heartbeat != bridge.DefaultHeartbeat || o.NotFoundWait != bridge.DefaultNotFoundWait {
		t.Fatalf("defaults: %+v, %v", o, err)
	}

	o, err = bridge.ParseFlags([]string{"-heartbeat", "1s", "-cors-origins", "https://a.example, https://b.example"},
		env(map[string]string{"BRIDGE_HEARTBEAT": "2s", "NATS_URL": "nats://n:4222", "BRIDGE_AUTH_TOKEN": "tok", "BRIDGE_NOT_FOUND_WAIT": "250ms"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Heartbeat != time.Second || o.NATS.URL != "nats://n:4222" || o.AuthToken != "tok" || o.NotFoundWait != 250*time.Millisecond ||
		!slices.Equal(o.CORSOrigins, []string{"https://a.example", "https://b.example"}) {
		t.Fatalf("a flag wins over its variable, a variable over the default: %+v", o)
	}

	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-heartbeat", "soon"}, nil, "heartbeat"},
		{nil, map[string]string{"BRIDGE_WRITE_TIMEOUT": "soon"}, "BRIDGE_WRITE_TIMEOUT"},
		{[]string{"-not-found-wait", "-1s"}, nil, "positive"},
		{[]string{"-max-body", "0"}, nil, "positive"},
		{[]string{"-nope"}, nil, "nope"},
		{[]string{"extra"}, nil, "unexpected"},
	} {
		if _, err := bridge.ParseFlags(c.args, env(c.env), io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: error %v; want one naming %s", c.args, c.env, err, c.want)
		}
	}
}
