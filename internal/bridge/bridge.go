// Package bridge serves a job's events over HTTP as Server-Sent Events: it
// takes jobs over HTTP and publishes them to the JetStream work queue,
// replays and follows jobs.events.<job_id> for each SSE client, cancels jobs,
// and reports their status from their last event. It keeps no state of its
// own, so any number of bridges can stand behind a load balancer.
//
// It knows the wire contract (internal/jobs), NATS and HTTP; it knows
// nothing about llama.cpp or the workers.
package bridge

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/openai"
	"github.com/narrated/llmworker/internal/tracing"
)

// Defaults of a Config's zero fields.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultNotFoundWait = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultQueuedEvery  = 2 * time.Second
	// DefaultMaxBodyBytes admits the largest valid request plus the
	// bridge's own fields.
	DefaultMaxBodyBytes = jobs.MaxRequestBytes + 1<<10
)

// Config tunes a Server. Zero fields take the defaults above.
type Config struct {
	// Heartbeat is how often an idle stream gets a ": ping" comment.
	Heartbeat time.Duration
	// NotFoundWait is how long GET .../events waits for a job that has
	// shown no event and is not queued before it answers 404.
	NotFoundWait time.Duration
	// WriteTimeout bounds each write to an SSE client: a client that does
	// not take an event within it is dropped (it may resume with
	// Last-Event-ID); it never holds back a worker or another client.
	WriteTimeout time.Duration
	// QueuedEvery is how often a stream whose job waits in the queue gets
	// a queued event with its position.
	QueuedEvery time.Duration
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// ReadTimeout bounds reading a request's body: a client that sends it
	// slower is cut off (408).
	ReadTimeout time.Duration
	// AuthToken, when set, is the bearer token every /v1 route requires.
	AuthToken string
	// CORSOrigins are the origins allowed to call the API from a browser;
	// "*" allows any.
	CORSOrigins []string
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.NotFoundWait <= 0 {
		c.NotFoundWait = DefaultNotFoundWait
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.QueuedEvery <= 0 {
		c.QueuedEvery = DefaultQueuedEvery
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	return c
}

//go:embed web/index.html
var page []byte

// Server is the bridge's HTTP handler. All its clients share the one NATS
// connection it is given.
type Server struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log zerolog.Logger
	mux *http.ServeMux
	hub *hub
	met *metrics
	// catalog knows the models the live workers serve (the OpenAI routes).
	catalog *catalog

	mu      sync.Mutex
	streams map[string]jetstream.Stream
}

// New builds a Server on an open NATS connection, which stays the
// caller's to close. Close the Server first, once its HTTP server has shut
// down.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) (*Server, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg.withDefaults(),
		nc:      nc,
		js:      js,
		log:     log,
		mux:     http.NewServeMux(),
		hub:     newHub(js, log),
		met:     newMetrics(),
		streams: make(map[string]jetstream.Stream),
	}
	if s.catalog, err = newCatalog(nc); err != nil {
		return nil, err
	}
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("GET /openapi.yaml", s.openAPI)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.met.handler())
	s.mux.HandleFunc("POST /v1/jobs", s.submit)
	s.mux.HandleFunc("GET /v1/jobs/{job_id}", s.status)
	s.mux.HandleFunc("DELETE /v1/jobs/{job_id}", s.cancel)
	s.mux.HandleFunc("GET /v1/jobs/{job_id}/events", s.events)
	s.routeOpenAI()
	return s, nil
}

// Close stops following the events stream; call it once the HTTP server
// has shut down and no stream is open.
func (s *Server) Close() {
	s.hub.close()
	s.catalog.close()
}

// ServeHTTP answers CORS preflights, checks the bearer token on /v1 routes
// and routes the request, counting it in the metrics by route and code.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	begin := time.Now()
	ctx, span := startSpan(r)
	tracing.ToHTTP(ctx, w.Header()) // the caller learns its trace
	r = r.WithContext(context.WithValue(ctx, arrivalKey{}, begin))
	rec := &recorder{ResponseWriter: w}
	s.serve(rec, r)
	route, code := s.route(r), rec.status()
	endSpan(span, route, code)
	s.met.request(route, code, time.Since(begin))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.boundRead(w, r)
	if s.cors(w, r) {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssebridge"`)
		if isOpenAIPath(r.URL.Path) {
			writeOpenAIError(w, openai.NewError(http.StatusUnauthorized, openai.TypeAuthentication, "invalid_api_key", "", "a valid bearer token (API key) is required"))
			return
		}
		writeError(w, http.StatusUnauthorized, &jobs.Error{Code: jobs.Unauthorized, Message: "a valid bearer token is required"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cors sets the CORS headers for an allowed origin and answers a
// preflight; it reports whether the request has been answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !(slices.Contains(s.cfg.CORSOrigins, "*") || slices.Contains(s.cfg.CORSOrigins, origin)) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Location, X-Job-Id, X-Request-Id, Retry-After, Traceparent, Tracestate")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Last-Event-ID, Traceparent, Tracestate, "+openAIClientHeaders)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.AuthToken == "" {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AuthToken)) == 1
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page)
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(llmworker.OpenAPI)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the NATS connection is up and every stream of
// the contract exists. Its reason names no address and no secret: anyone
// may read it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.nc.IsConnected() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "not connected to NATS"})
		return
	}
	for _, name := range []string{jobs.QueueStream, jobs.EventsStream, jobs.CancelStream} {
		if _, err := s.js.Stream(r.Context(), name); err != nil {
			reason := "the stream " + name + " cannot be read"
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				reason = "the stream " + name + " does not exist"
			}
			s.log.Warn().Err(err).Str("stream", name).Msg("not ready")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// stream returns a handle on a JetStream stream, looked up once.
func (s *Server) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s.mu.Lock()
	st, ok := s.streams[name]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.streams[name] = st
	s.mu.Unlock()
	return st, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// notFound answers 404 for a job that is not queued, running or remembered.
func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, &jobs.Error{Code: jobs.NotFound, Field: "job_id", Message: "no job with this id is queued, running or remembered"})
}

func writeError(w http.ResponseWriter, status int, err error) {
	var e *jobs.Error
	if !errors.As(err, &e) {
		e = &jobs.Error{Code: jobs.Unavailable, Message: err.Error()}
	}
	writeJSON(w, status, e)
}

// jobID takes the job id from the path, answering 400 when it cannot be one.
func jobID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("job_id")
	if err := jobs.CheckSubjectToken("job_id", id); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return "", false
	}
	return id, true
}

// CreateMissingStreams creates the contract's streams that do not exist
// yet, with replicas servers holding each, leaving existing ones as the
// workers configured them.
func CreateMissingStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range jobs.StreamConfigs(jobs.StreamOptions{Replicas: replicas}) {
		_, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil // a worker made it meanwhile
			}
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
