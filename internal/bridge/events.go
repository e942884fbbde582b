package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// follow says how a stream of events is served.
type follow struct {
	// after is the last event id the client has: events up to it are
	// skipped.
	after uint64
	// known is set when the job is known to exist, so no 404 can come.
	known bool
	// cancelOnGone cancels the job when the client goes away first.
	cancelOnGone bool
	// live, when set, is a follower the caller registered (and will
	// unregister) ahead, and last the read of the job's last event it
	// started after that: the bridge's POST does both while it publishes
	// the job, to spare a round trip before the first token.
	live *follower
	last <-chan lastRead
}

// lastRead is the answer of lastEvent.
type lastRead struct {
	msg *jetstream.RawStreamMsg
	err error
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

// follow streams a job's events as SSE: those stored so far, read from
// JOB_EVENTS, then the live ones from the hub, skipping those the client
// already has, until the terminal event.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, id string, f follow) {
	ctx := r.Context()
	// Following before reading what is stored loses nothing: an event
	// stored after this point comes live; one stored before, from the stream.
	live := f.live
	if live == nil {
		var ok bool
		if live, ok = s.followLive(ctx, w, id); !ok {
			return
		}
		defer s.hub.unfollow(id, live)
	}
	var last *jetstream.RawStreamMsg
	var err error
	if f.last != nil {
		read := <-f.last
		last, err = read.msg, read.err
	} else {
		last, err = s.lastEvent(ctx, id)
	}
	if err == nil && last == nil && !f.known {
		f.known, err = s.queued(ctx, id)
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: err.Error()})
		return
	}
	if last == nil && !f.known && !s.awaitFirst(ctx, id, live) {
		if ctx.Err() == nil {
			writeError(w, http.StatusNotFound, &jobs.Error{Code: jobs.NotFound, Field: "job_id", Message: "no job with this id is queued, running or remembered"})
		}
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Job-Id", id)
	out := &sseStream{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, sent: f.after}
	// gone ends a stream cut short: by the client leaving, or by the bridge
	// dropping a client that does not keep up.
	gone := func(err error) {
		if ctx.Err() != nil {
			s.clientGone(id, f)
		} else {
			s.dropped(id, err)
		}
	}
	w.WriteHeader(http.StatusOK)
	if err := out.flush(); err != nil {
		gone(err)
		return
	}
	if last != nil {
		if done, err := s.replay(ctx, id, last.Sequence, out.send); err != nil || done {
			if err != nil {
				gone(err)
			}
			return
		}
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		batch, behind := live.take()
		for _, d := range batch {
			if done, err := out.send(d); err != nil || done {
				if err != nil {
					gone(err)
				}
				return
			}
		}
		if behind {
			gone(fmt.Errorf("more than %d events behind", maxQueued))
			return
		}
		select {
		case <-ctx.Done():
			gone(ctx.Err())
			return
		case <-heartbeat.C:
			if err := out.write([]byte(": ping\n\n")); err != nil {
				gone(err)
				return
			}
		case <-live.wake:
		}
	}
}

// followLive registers for the job's live events, or answers 503.
func (s *Server) followLive(ctx context.Context, w http.ResponseWriter, id string) (*follower, bool) {
	live, err := s.hub.follow(ctx, id)
	if err != nil {
		s.log.Error().Err(err).Str("job_id", id).Msg("follow the events stream")
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: "the job's events cannot be read: " + err.Error()})
		return nil, false
	}
	return live, true
}

// replay hands the job's stored events, up to the stream sequence through,
// to send, until send says the stream is done.
func (s *Server) replay(ctx context.Context, id string, through uint64, send func(delivery) (bool, error)) (bool, error) {
	st, err := s.stream(ctx, jobs.EventsStream)
	if err != nil {
		return false, err
	}
	subject := jobs.EventsSubject(id)
	for seq := uint64(1); seq <= through; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil // aged out meanwhile
		}
		if err != nil {
			return false, err
		}
		if msg.Sequence > through {
			return false, nil
		}
		d := delivery{data: msg.Data}
		if json.Unmarshal(d.data, &d.head) == nil && d.head.Seq > 0 {
			if done, err := send(d); err != nil || done {
				return done, err
			}
		}
		seq = msg.Sequence + 1
	}
	return false, nil
}

// awaitFirst waits NotFoundWait for a job that is not known yet to show its
// first event, or to turn up in the queue.
func (s *Server) awaitFirst(ctx context.Context, id string, live *follower) bool {
	wait := time.NewTimer(s.cfg.NotFoundWait)
	defer wait.Stop()
	select {
	case <-live.wake:
		return true // the stream takes the news from the queue
	case <-ctx.Done():
		return false
	case <-wait.C:
		queued, err := s.queued(ctx, id)
		return err == nil && queued
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

// sseStream writes a job's events to one client, each within a bound, so
// that a client that does not read is dropped instead of holding its
// handler; it skips the events the client already has.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	// sent is the last event id the client has.
	sent uint64
}

// send writes an event the client does not have yet, and reports whether
// it was the terminal one.
func (out *sseStream) send(d delivery) (bool, error) {
	if d.head.Seq > out.sent {
		if err := out.write(frame(&d)); err != nil {
			return false, err
		}
		out.sent = d.head.Seq
	}
	return d.head.Type.Terminal(), nil
}

func (out *sseStream) write(b []byte) error {
	if err := out.rc.SetWriteDeadline(time.Now().Add(out.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := out.w.Write(b); err != nil {
		return err
	}
	return out.flush()
}

func (out *sseStream) flush() error {
	if err := out.rc.SetWriteDeadline(time.Now().Add(out.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return out.rc.Flush()
}
