package bridge

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/narrated/llmworker/internal/flagenv"
	"github.com/narrated/llmworker/internal/natsconn"
)

// Options are the ssebridge binary's settings: where it connects and
// listens, and the Server's Config.
type Options struct {
	// NATS is the server and the credentials the bridge connects with.
	NATS   natsconn.Config
	Listen string
	// EnsureStreams creates the contract's streams that are missing at
	// start-up, so the bridge works before any worker has started.
	EnsureStreams bool
	// Replicas is how many servers of a NATS cluster hold each stream the
	// bridge creates.
	Replicas int
	Config
}

// flagEnv names the environment variable behind each flag.
var flagEnv = natsconn.WithEnv(map[string]string{
	"listen":         "BRIDGE_LISTEN",
	"ensure-streams": "BRIDGE_ENSURE_STREAMS",
	"replicas":       "REPLICAS",
	"auth-token":     "BRIDGE_AUTH_TOKEN",
	"cors-origins":   "BRIDGE_CORS_ORIGINS",
	"heartbeat":      "BRIDGE_HEARTBEAT",
	"not-found-wait": "BRIDGE_NOT_FOUND_WAIT",
	"write-timeout":  "BRIDGE_WRITE_TIMEOUT",
	"max-body":       "BRIDGE_MAX_BODY",
	"read-timeout":   "BRIDGE_READ_TIMEOUT",
})

// FlagSet defines the ssebridge flags on o. It is the binary's only
// definition of them, so the tests parse compose.yaml's commands with it.
func FlagSet(o *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("ssebridge", flag.ContinueOnError)
	o.NATS.Define(fs, natsconn.DefaultURL, "NATS server URL, or several separated by commas")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.BoolVar(&o.EnsureStreams, "ensure-streams", true, "create the JetStream streams that are missing at start-up")
	fs.IntVar(&o.Replicas, "replicas", 1, "servers of a NATS cluster holding each stream the bridge creates (1, 3 or 5)")
	fs.StringVar(&o.AuthToken, "auth-token", "", "bearer token required on every /v1 route (empty: none)")
	fs.Func("cors-origins", "comma-separated origins allowed by CORS, or * (empty: none)", func(v string) error {
		o.CORSOrigins = nil
		for _, origin := range strings.Split(v, ",") {
			if origin = strings.TrimSpace(origin); origin != "" {
				o.CORSOrigins = append(o.CORSOrigins, origin)
			}
		}
		return nil
	})
	fs.DurationVar(&o.Heartbeat, "heartbeat", DefaultHeartbeat, "interval of ': ping' comments on an idle stream")
	fs.DurationVar(&o.NotFoundWait, "not-found-wait", DefaultNotFoundWait, "how long to wait for an unknown job's first event before 404")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", DefaultWriteTimeout, "drop an SSE client that does not take a write within this")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", DefaultReadTimeout, "cut off a client whose request (headers and body) takes longer to arrive")
	fs.Int64Var(&o.MaxBodyBytes, "max-body", DefaultMaxBodyBytes, "largest request body, in bytes")
	flagenv.Document(fs, flagEnv)
	return fs
}

// ParseFlags parses args, then takes each flag not given from its
// environment variable, read through getenv.
func ParseFlags(args []string, getenv func(string) string, output io.Writer) (Options, error) {
	var o Options
	fs := FlagSet(&o)
	fs.SetOutput(output)
	if err := flagenv.Parse(fs, args, flagEnv, getenv); err != nil {
		return o, err
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return o, fmt.Errorf("-replicas %d: must be from 1 to 5", o.Replicas)
	}
	if o.Heartbeat <= 0 || o.NotFoundWait <= 0 || o.WriteTimeout <= 0 || o.MaxBodyBytes <= 0 || o.ReadTimeout <= 0 {
		return o, fmt.Errorf("-heartbeat, -not-found-wait, -write-timeout, -read-timeout and -max-body must be positive")
	}
	return o, nil
}
