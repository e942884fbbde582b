// Command ssebridge serves jobs' events as HTTP Server-Sent Events: it
// parses its flags (with environment fallbacks), connects to NATS and
// serves internal/bridge until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/tracing"
)

func main() {
	log := zerolog.New(os.Stdout).With().Timestamp().Str("service", "ssebridge").Logger()
	opts, err := bridge.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatal().Err(err).Msg("bad configuration")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, log); err != nil {
		log.Fatal().Err(err).Msg("ssebridge stopped")
	}
}

// loopback reports whether addr can be reached from this machine only.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

func run(ctx context.Context, opts bridge.Options, log zerolog.Logger) error {
	stopTracing, err := tracing.Setup(ctx, "llmbridge", version())
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn().Err(err).Msg("exporting the last spans failed")
		}
	}()
	url := natsconn.Redact(opts.NATS.URL)
	// A server that is not up yet is waited for; one that refuses the
	// bridge's credentials stops it at once.
	nc, err := opts.NATS.ConnectOrRetry("ssebridge",
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Str("url", url).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", natsconn.Describe(nc)).Msg("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn().Err(err).Msg("nats error")
		}))
	if err != nil {
		return err
	}
	defer nc.Close()
	if opts.EnsureStreams {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = bridge.CreateMissingStreams(sctx, js, opts.Replicas)
		cancel()
		if err != nil {
			return err
		}
	}
	srv, err := bridge.New(opts.Config, nc, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	// Headers within -read-timeout (the Server bounds the body); an idle
	// keep-alive connection is closed after a minute. No ReadTimeout: it
	// would end every stream's response as well.
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: opts.ReadTimeout, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
	if !loopback(ln.Addr()) && opts.AuthToken == "" {
		log.Warn().Str("listen", ln.Addr().String()).
			Msg("listening beyond this machine with no -auth-token: anyone who reaches this address can submit and cancel jobs and read every job's events")
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info().Str("listen", ln.Addr().String()).Str("nats", url).Msg("ssebridge ready")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close() // streams still open after the grace period are cut; clients resume
	}
	return nil
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "dev"
}
