package worker

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	env := map[string]string{"MODEL_PATH": "/m.gguf", "WORKER_PARALLEL": "2", "WORKER_POOL": "gpu", "ACK_WAIT": "5s", "MAX_DELIVER": "3"}
	o, err := ParseFlags([]string{"-pool", "cpu"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Engine.ModelPath != "/m.gguf" || o.Engine.Parallel != 2 || o.Slots != 2 || o.Pool != "cpu" || o.WorkerID == "" || o.NATS.URL != "" ||
		o.AckWait != 5*time.Second || o.MaxDeliver != 3 {
		t.Errorf("options %+v", o)
	}
	for _, bad := range [][]string{{"-pool", "a.b"}, {"-parallel", "0"}, {"-ctx-size", "8"}, {"-log", "xml"}, {"-threads", "-1"}, {"-ack-wait", "10ms"}, {"-max-deliver", "0"}, {"-max-queued", "-1"}, {"-replicas", "0"}} {
		if _, err := ParseFlags(bad, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: err %v", bad, err)
		}
	}
}
