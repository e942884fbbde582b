package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// delivery is one event as it comes from the stream.
type delivery struct {
	head jobs.Header
	data []byte
}

// follow says how a stream of events is served.
type follow struct {
	// after is the last event id the client has: events up to it are
	// skipped.
	after uint64
	// known is set when the job is known to exist, so no 404 can come.
	known bool
	// cancelOnGone cancels the job when the client goes away first.
	cancelOnGone bool
}

// events serves GET /v1/jobs/{job_id}/events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	after, err := lastEventID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.follow(w, r, id, follow{after: after})
}

// lastEventID reads the Last-Event-ID header, or the last_event_id query
// parameter for clients that cannot set headers.
func lastEventID(r *http.Request) (uint64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &jobs.Error{Code: jobs.InvalidRequest, Field: "last_event_id", Message: "must be an event id (a non-negative integer)"}
	}
	return n, nil
}

// follow replays a job's events from the start and follows them as SSE
// until its terminal event, skipping those the client already has.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, id string, f follow) {
	ctx := r.Context()
	events, stop, err := s.subscribe(ctx, id)
	if err != nil {
		s.log.Error().Err(err).Str("job_id", id).Msg("subscribe to events")
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: "the job's events cannot be read: " + err.Error()})
		return
	}
	defer stop()

	if !f.known {
		if f.known, err = s.exists(ctx, id); err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
	}
	var first *delivery
	if !f.known {
		found, d := s.awaitFirst(ctx, id, events)
		if !found {
			if ctx.Err() == nil {
				writeError(w, http.StatusNotFound, &jobs.Error{Code: jobs.NotFound, Field: "job_id", Message: "no job with this id is queued, running or remembered"})
			}
			return
		}
		first = d
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Job-Id", id)
	sw := sseWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
	w.WriteHeader(http.StatusOK)
	if err := sw.flush(); err != nil {
		return
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		d := first
		first = nil
		if d == nil {
			select {
			case <-ctx.Done():
				s.clientGone(id, f)
				return
			case <-heartbeat.C:
				if err := sw.send([]byte(": ping\n\n")); err != nil {
					s.dropped(id, err)
					return
				}
				continue
			case got := <-events:
				d = &got
			}
		}
		if d.head.Seq > f.after {
			if err := sw.send(frame(d)); err != nil {
				s.dropped(id, err)
				return
			}
		}
		if d.head.Type.Terminal() {
			return
		}
	}
}

// awaitFirst waits NotFoundWait for a job that is not known yet to show its
// first event, or to turn up in the queue.
func (s *Server) awaitFirst(ctx context.Context, id string, events <-chan delivery) (bool, *delivery) {
	wait := time.NewTimer(s.cfg.NotFoundWait)
	defer wait.Stop()
	select {
	case d := <-events:
		return true, &d
	case <-ctx.Done():
		return false, nil
	case <-wait.C:
		queued, err := s.queued(ctx, id)
		return err == nil && queued, nil
	}
}

func (s *Server) clientGone(id string, f follow) {
	if !f.cancelOnGone {
		s.log.Debug().Str("job_id", id).Msg("client left")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.publishCancel(ctx, id); err != nil {
		s.log.Error().Err(err).Str("job_id", id).Msg("cancel on disconnect")
		return
	}
	s.log.Info().Str("job_id", id).Msg("client left; job cancelled")
}

func (s *Server) dropped(id string, err error) {
	s.log.Warn().Err(err).Str("job_id", id).Dur("write_timeout", s.cfg.WriteTimeout).Msg("slow client dropped")
}

// subscribe replays the job's events from the stream's start through an
// ordered consumer on the shared connection. stop ends it and waits until
// no message handler runs any more.
func (s *Server) subscribe(ctx context.Context, id string) (<-chan delivery, func(), error) {
	cons, err := s.js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{jobs.EventsSubject(id)},
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan delivery, 16)
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		d := delivery{data: m.Data()}
		if err := json.Unmarshal(d.data, &d.head); err != nil || d.head.Seq == 0 {
			s.log.Warn().Str("job_id", id).Str("subject", m.Subject()).Msg("skipping a message that is not an event")
			return
		}
		select {
		case ch <- d:
		case <-done:
		}
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		close(done)
		cc.Stop()
		<-cc.Closed()
	}
	return ch, stop, nil
}

// frame encodes one event as an SSE message.
func frame(d *delivery) []byte {
	var b bytes.Buffer
	b.Grow(len(d.data) + 48)
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(d.head.Seq, 10))
	b.WriteString("\nevent: ")
	b.WriteString(string(d.head.Type))
	for line := range bytes.Lines(d.data) {
		b.WriteString("\ndata: ")
		b.Write(bytes.TrimRight(line, "\r\n"))
	}
	b.WriteString("\n\n")
	return b.Bytes()
}

// sseWriter writes to a client within a bound, so that a client that does
// not read is dropped instead of holding its handler.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (sw sseWriter) send(b []byte) error {
	if err := sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := sw.w.Write(b); err != nil {
		return err
	}
	return sw.flush()
}

func (sw sseWriter) flush() error {
	if err := sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return sw.rc.Flush()
}
