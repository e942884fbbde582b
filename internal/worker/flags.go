package worker

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/flagenv"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/natsconn"
)

// Options are the worker binary's settings.
type Options struct {
	// NATS is the server to use and the credentials to present; an empty
	// URL starts an embedded server.
	NATS natsconn.Config
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// EmbeddedListen is where the embedded server listens.
	EmbeddedListen string
	// Log is "auto" (console on a terminal, JSON otherwise), "json" or
	// "console".
	Log string
	// MetricsListen serves Prometheus metrics at /metrics when set.
	MetricsListen string
	Engine        engine.Config
	Config
}

// flagEnv names the environment variable behind each flag.
var flagEnv = natsconn.WithEnv(map[string]string{
	"model":           "MODEL_PATH",
	"data-dir":        "DATA_DIR",
	"embedded-listen": "EMBEDDED_LISTEN",
	"worker-id":       "WORKER_ID",
	"pool":            "WORKER_POOL",
	"parallel":        "WORKER_PARALLEL",
	"ctx-size":        "CTX_SIZE",
	"threads":         "THREADS",
	"flash-attn":      "FLASH_ATTN",
	"drain-timeout":   "DRAIN_TIMEOUT",
	"progress-every":  "PROGRESS_EVERY",
	"events-max-age":  "EVENTS_MAX_AGE",
	"log":             "LOG_FORMAT",
	"metrics-listen":  "METRICS_LISTEN",
	"ack-wait":        "ACK_WAIT",
	"max-deliver":     "MAX_DELIVER",
	"max-queued":      "MAX_QUEUED",
	"replicas":        "REPLICAS",
})

// FlagSet defines the worker's flags on o: the binary's only definition of
// them, which the tests also use to check compose.yaml.
func FlagSet(o *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&o.Engine.ModelPath, "model", "", "GGUF model file")
	o.NATS.Define(fs, "", "NATS server URL, or several separated by commas; empty starts an embedded server with JetStream on 127.0.0.1:4222")
	fs.StringVar(&o.EmbeddedListen, "embedded-listen", "127.0.0.1:4222", "where the embedded NATS server listens (with an empty -nats)")
	fs.StringVar(&o.DataDir, "data-dir", "data/nats", "the embedded server's JetStream store")
	fs.StringVar(&o.WorkerID, "worker-id", "", "this worker's id (default: host name and a random suffix)")
	fs.StringVar(&o.Pool, "pool", "", "take jobs from jobs.execute.<pool> instead of jobs.execute")
	fs.IntVar(&o.Engine.Parallel, "parallel", engine.DefaultParallel, "jobs generated at once (continuous batching)")
	fs.IntVar(&o.Engine.ContextSize, "ctx-size", engine.DefaultContextSize, "context of each job, in tokens (prompt plus generation)")
	fs.IntVar(&o.Engine.Threads, "threads", engine.DefaultThreads(), "llama.cpp threads; keep it at or below the free cores")
	fs.BoolVar(&o.Engine.FlashAttention, "flash-attn", false, "use llama.cpp's flash attention (helps on GPUs; slower on CPU)")
	fs.IntVar(&o.ProgressEvery, "progress-every", DefaultProgressEvery, "tokens between token_progress narration events")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "on shutdown, how long running jobs may finish before they are handed back")
	fs.DurationVar(&o.EventsMaxAge, "events-max-age", jobs.DefaultEventsMaxAge, "how long the events stream keeps a job's events for replay")
	fs.DurationVar(&o.AckWait, "ack-wait", jobs.AckWait, "how long a job's worker may stay silent before the queue gives the job to another (every worker of a pool must use the same)")
	fs.IntVar(&o.MaxDeliver, "max-deliver", jobs.MaxDeliver, "attempts a job gets before it ends with RETRIES_EXHAUSTED (hand-backs on shutdown do not count)")
	fs.IntVar(&o.MaxQueued, "max-queued", 0, "jobs a pool may hold, queued or running, before new ones are refused with QUEUE_FULL (0: no bound; the same for every pool)")
	fs.IntVar(&o.Replicas, "replicas", 1, "servers of a NATS cluster holding each stream and the pool's consumer (1, 3 or 5)")
	fs.StringVar(&o.Log, "log", "auto", "stdout format: auto, json or console")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://<address>/metrics (empty: off)")
	flagenv.Document(fs, flagEnv)
	return fs
}

// ParseFlags parses args, with each flag not given taken from its
// environment variable, and checks the values.
func ParseFlags(args []string, getenv func(string) string, output io.Writer) (Options, error) {
	var o Options
	fs := FlagSet(&o)
	fs.SetOutput(output)
	if err := flagenv.Parse(fs, args, flagEnv, getenv); err != nil {
		return o, err
	}
	switch {
	case o.Pool != "" && !jobs.ValidSubjectToken(o.Pool):
		return o, fmt.Errorf("-pool %q: %s", o.Pool, jobs.SubjectTokenRule)
	case o.Engine.Parallel < 1 || o.Engine.Parallel > 64:
		return o, fmt.Errorf("-parallel %d: must be from 1 to 64", o.Engine.Parallel)
	case o.Engine.ContextSize < 16:
		return o, fmt.Errorf("-ctx-size %d: must be at least 16", o.Engine.ContextSize)
	case o.Engine.Threads < 1:
		return o, fmt.Errorf("-threads %d: must be at least 1", o.Engine.Threads)
	case o.AckWait < time.Second:
		return o, fmt.Errorf("-ack-wait %s: must be at least 1s", o.AckWait)
	case o.MaxQueued < 0:
		return o, fmt.Errorf("-max-queued %d: must be 0 (no bound) or more", o.MaxQueued)
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("-replicas %d: must be from 1 to 5", o.Replicas)
	case o.MaxDeliver < 1:
		return o, fmt.Errorf("-max-deliver %d: must be at least 1", o.MaxDeliver)
	case o.ProgressEvery < 1:
		return o, fmt.Errorf("-progress-every %d: must be at least 1", o.ProgressEvery)
	case o.Log != "auto" && o.Log != "json" && o.Log != "console":
		return o, fmt.Errorf("-log %q: must be auto, json or console", o.Log)
	case o.NATS.URL == "" && o.NATS.HasCredentials():
		return o, fmt.Errorf("-nats-creds, -nats-nkey and -nats-tls-*: need -nats (the embedded server takes no credentials)")
	}
	if o.WorkerID == "" {
		host, _ := os.Hostname()
		o.WorkerID = host + "-" + uuid.NewString()[:8]
	}
	o.Slots = o.Engine.Parallel
	return o, nil
}
