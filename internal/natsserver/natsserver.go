// Package natsserver runs the NATS server that a worker embeds when it is
// given no NATS URL: JetStream on, its store in a data directory, on a
// loopback port that a bridge and the nats CLI can reach.
package natsserver

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Default address of the embedded server: the same one the bridge and the
// nats CLI use by default.
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 4222
)

// Config says where the embedded server listens and stores.
type Config struct {
	// Host and Port default to 127.0.0.1:4222.
	Host string
	// Port -1 picks a free port (for tests).
	Port     int
	StoreDir string
}

// Start runs a server and waits until it takes connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port > 0 {
		// The server would only log a taken port, and we would wait for it.
		l, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats server: %w", err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName: "embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// A job's request, with its longest prompt, must fit in one message.
		MaxPayload: 8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats server: not ready on %s:%d within 10s", cfg.Host, cfg.Port)
	}
	return srv, nil
}
