package worker

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	env := map[string]string{"MODEL_PATH": "/m.gguf", "WORKER_PARALLEL": "2", "WORKER_POOL": "gpu"}
	o, err := ParseFlags([]string{"-pool", "cpu"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Engine.ModelPath != "/m.gguf" || o.Engine.Parallel != 2 || o.Slots != 2 || o.Pool != "cpu" || o.WorkerID == "" || o.NATS.URL != "" {
		t.Errorf("options %+v", o)
	}
	for _, bad := range [][]string{{"-pool", "a.b"}, {"-parallel", "0"}, {"-ctx-size", "8"}, {"-log", "xml"}, {"-threads", "-1"}} {
		if _, err := ParseFlags(bad, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: err %v", bad, err)
		}
	}
}
