// Command worker holds one GGUF model in llama.cpp and runs execute jobs
// from NATS: it parses its flags (with environment fallbacks), loads the
// model, connects to NATS (or starts an embedded server), and runs
// internal/worker until SIGINT or SIGTERM, then drains and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/narrated/llmworker/internal/cpulevel"
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/natsserver"
	"github.com/narrated/llmworker/internal/tracing"
	"github.com/narrated/llmworker/internal/worker"
)

func main() { os.Exit(run()) }

func run() int {
	if err := cpulevel.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	opts, err := worker.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	log := newLogger(opts.Log).With().Str("worker_id", opts.WorkerID).Logger()
	if _, err := opts.NATS.Options(); err != nil {
		log.Error().Msg("❌ " + err.Error()) // the error is the sentence: it names the flag at fault
		return 1
	}
	stopTracing, err := tracing.Setup(context.Background(), "llmworker", version())
	if err != nil {
		log.Error().Msg("❌ " + err.Error())
		return 1
	}
	defer flushTraces(stopTracing, log)
	narrator := narration.New(log, opts.WorkerID)
	lifecycle := &narration.LifecycleSink{}
	narrator.Tell(narration.Startup(opts.WorkerID, version()), lifecycle)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	narrator.Tell(narration.DeviceInit(engine.Devices().String()), lifecycle)
	eng, err := load(opts.Engine, narrator, lifecycle)
	if err != nil {
		log.Error().Err(err).Msg("❌ cannot load the model")
		return 1
	}
	defer eng.Close()

	nc, srv, err := connect(opts, log)
	if err != nil {
		var refused *natsconn.Error
		if errors.As(err, &refused) {
			err = errors.New(refused.Reason) // the URL is told beside it
		}
		narrator.Tell(narration.NATSConnectFailed(natsTarget(opts), err, refused != nil && !refused.Unreachable), lifecycle)
		return 1
	}
	if srv != nil {
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	}
	narrator.Tell(narration.NATSConnect(natsconn.Describe(nc)), lifecycle)
	lifecycle.Attach(nc)

	if opts.MetricsListen != "" {
		stopMetrics, err := serveMetrics(&opts, eng.Info().Name, log)
		if err != nil {
			log.Error().Err(err).Msg("❌ cannot serve metrics")
			return 1
		}
		defer stopMetrics()
	}
	opts.Version = version()
	w, err := worker.New(opts.Config, nc, eng, narrator, lifecycle, log)
	if err == nil {
		err = w.Run(ctx)
	}
	if err != nil {
		log.Error().Err(err).Msg("❌ worker stopped")
		nc.Close()
		return 1
	}
	narrator.Tell(narration.Shutdown(opts.WorkerID, "goodbye"), lifecycle)
	drain(nc)
	return 0
}

// load loads the model, narrating its progress in quarters.
func load(cfg engine.Config, narrator *narration.Narrator, lifecycle narration.Sink) (*engine.Engine, error) {
	var size int64
	if st, err := os.Stat(cfg.ModelPath); err == nil {
		size = st.Size()
	}
	narrator.Tell(narration.ModelLoadStart(cfg.ModelPath, size), lifecycle)
	told := 0
	cfg.Progress = func(p float32) {
		if q := int(p*4) * 25; q > told {
			told = q
			narrator.Tell(narration.ModelLoadProgress(cfg.ModelPath, q), lifecycle)
		}
	}
	eng, err := engine.Load(cfg)
	if err != nil {
		return nil, err
	}
	info := eng.Info()
	narrator.Tell(narration.ModelLoadComplete(info.Path, info.Name, info.SizeBytes, info.LoadTime), lifecycle)
	return eng, nil
}

// connect connects to -nats with the credentials given, or starts the
// embedded server when it is empty.
func connect(opts worker.Options, log zerolog.Logger) (*nats.Conn, *server.Server, error) {
	var srv *server.Server
	cfg := opts.NATS
	if cfg.URL == "" {
		var err error
		host, port, err := net.SplitHostPort(opts.EmbeddedListen)
		if err != nil {
			return nil, nil, fmt.Errorf("-embedded-listen %q: %w", opts.EmbeddedListen, err)
		}
		portNum, err := strconv.Atoi(port)
		if err != nil {
			return nil, nil, fmt.Errorf("-embedded-listen %q: bad port", opts.EmbeddedListen)
		}
		srv, err = natsserver.Start(natsserver.Config{Host: host, Port: portNum, StoreDir: opts.DataDir})
		if err != nil {
			return nil, nil, err
		}
		cfg.URL = srv.ClientURL()
	}
	nc, err := cfg.Connect("worker "+opts.WorkerID,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// No buffering while disconnected: a job's events fail at once and
		// the job goes back to the queue, rather than flushing late beside
		// the worker that took it over meanwhile.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", natsconn.Describe(nc)).Msg("reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn().Err(err).Msg("NATS error")
		}))
	if err != nil {
		if srv != nil {
			srv.Shutdown()
		}
		return nil, nil, err
	}
	return nc, srv, nil
}

// serveMetrics serves the worker's Prometheus metrics, with Go's and the
// process's, at -metrics-listen; the returned func stops it.
func serveMetrics(opts *worker.Options, model string, log zerolog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Metrics = worker.NewMetrics(reg, model, opts.Pool)
	l, err := net.Listen("tcp", opts.MetricsListen)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	log.Info().Str("url", "http://"+l.Addr().String()+"/metrics").Msg("serving metrics")
	return func() { srv.Close() }, nil
}

// flushTraces exports the spans still buffered, for at most 5 seconds.
func flushTraces(stop func(context.Context) error, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn().Err(err).Msg("exporting the last spans failed")
	}
}

// drain flushes what the connection still holds and waits until it closes.
func drain(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	nc.SetDisconnectErrHandler(nil)
	if nc.Drain() != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		nc.Close()
	}
}

func natsTarget(opts worker.Options) string {
	if opts.NATS.URL == "" {
		return "embedded " + opts.EmbeddedListen
	}
	return natsconn.Redact(opts.NATS.URL)
}

// newLogger writes zerolog JSON to stdout, or pretty console lines when
// stdout is a terminal (or -log console).
func newLogger(format string) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	if format == "console" || format == "auto" && term.IsTerminal(int(os.Stdout.Fd())) {
		return zerolog.New(zerolog.ConsoleWriter{
			Out: os.Stdout, TimeFormat: "15:04:05.000",
			// The emoji line says it; the sentence is for JSON readers.
			FieldsExclude: []string{"human", "actor", "target"},
		}).With().Timestamp().Logger()
	}
	return zerolog.New(os.Stdout).With().Timestamp().Logger()
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "dev"
}
