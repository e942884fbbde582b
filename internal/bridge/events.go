package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// streamOptions say how a job's event stream is served.
type streamOptions struct {
	// after is the last event id the client has: events up to it are
	// skipped.
	after uint64
	// known is set when the job is known to exist, so no 404 can come.
	known bool
	// cancelOnGone cancels the job when the client goes away first.
	cancelOnGone bool
	// live, when set, is a watcher the caller registered (and will
	// unregister) ahead, and last the read of the job's last event it
	// started after that: the bridge's POST does both while it publishes
	// the job, to spare a round trip before the first token.
	live *watcher
	last <-chan lastRead
	// submitted, when set, is when this bridge received the job: its
	// first token's time from there is measured.
	submitted time.Time
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
	s.serveEvents(w, r, id, streamOptions{after: after})
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

// serveEvents streams a job's events as SSE: those stored so far, read
// from JOB_EVENTS, then the live ones from the hub, skipping those the
// client already has, until the terminal event.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, id string, o streamOptions) {
	ctx := r.Context()
	// Watching before reading what is stored loses nothing: an event
	// stored after this point comes live; one stored before, from the stream.
	live := o.live
	if live == nil {
		var ok bool
		if live, ok = s.watchLive(ctx, w, id); !ok {
			return
		}
		defer s.hub.unwatch(id, live)
	}
	last, ok := s.findJob(ctx, w, id, o, live)
	if !ok {
		return
	}
	out := openSSE(w, id, s.cfg.WriteTimeout, o.after)
	s.met.streams.Inc()
	defer s.met.streams.Dec()
	if o.after > 0 {
		s.met.resumes.Inc()
	}
	if !o.submitted.IsZero() {
		out.firstToken = func() { s.met.firstToken.Observe(time.Since(o.submitted).Seconds()) }
	}
	err := out.flush()
	done := false
	if err == nil && last != nil {
		done, err = s.replay(ctx, id, last.Sequence, out.send)
	}
	if err == nil && !done {
		err = s.sendLive(ctx, out, live, id, last == nil)
	}
	if err != nil {
		s.cutShort(ctx, id, o, err)
	}
}

// findJob reads the job's last stored event, nil when it has none yet,
// and answers 404 or 503 for a job that cannot be streamed.
func (s *Server) findJob(ctx context.Context, w http.ResponseWriter, id string, o streamOptions, live *watcher) (*jetstream.RawStreamMsg, bool) {
	var last *jetstream.RawStreamMsg
	var err error
	if o.last != nil {
		read := <-o.last
		last, err = read.msg, read.err
	} else {
		last, err = s.lastEvent(ctx, id)
	}
	known := o.known
	if err == nil && last == nil && !known {
		known, err = s.queued(ctx, id)
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, &jobs.Error{Code: jobs.Unavailable, Message: err.Error()})
		return nil, false
	}
	if last == nil && !known && !s.awaitFirst(ctx, id, live) {
		if ctx.Err() == nil {
			notFound(w)
		}
		return nil, false
	}
	return last, true
}

// openSSE answers 200 with the headers of an event stream.
func openSSE(w http.ResponseWriter, id string, timeout time.Duration, after uint64) *sseStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Job-Id", id)
	w.WriteHeader(http.StatusOK)
	return &sseStream{w: w, rc: http.NewResponseController(w), timeout: timeout, sent: after}
}

// sendLive sends the watcher's events, with a heartbeat while there are
// none, until the terminal event or an error. While a job that had no
// events waits for its first, queued events tell its place in the queue.
func (s *Server) sendLive(ctx context.Context, out *sseStream, live *watcher, id string, waiting bool) error {
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	var queued <-chan time.Time
	before := out.sent
	if waiting {
		// The first notice waits a moment: a free worker starts a job
		// sooner, and reading the queue must not delay its first token.
		tick := time.NewTicker(s.cfg.QueuedEvery)
		defer tick.Stop()
		queued = tick.C
	}
	for {
		batch, behind := live.take()
		for _, d := range batch {
			if d.head.Seq > out.sent+1 {
				if err := s.fillGap(ctx, id, out, d.head.Seq); err != nil {
					return err
				}
			}
			if done, err := out.send(d); err != nil || done {
				return err
			}
		}
		if behind {
			return fmt.Errorf("%w: more than %d events behind", errClientBehind, maxQueued)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-heartbeat.C:
			if err := out.write([]byte(": ping\n\n")); err != nil {
				return err
			}
		case <-queued:
			if out.sent > before {
				queued = nil // started
				continue
			}
			if err := s.tellQueued(ctx, id, out); err != nil {
				return err
			}
		case <-live.wake:
		}
	}
}

// fillGap sends, from the stream, the events between the last one sent
// and seq, which came live first. In a cluster the hub's consumer may
// deliver an event before the stream's leader answers reads with it, so a
// stream that read the job's last event just then would miss it: it reads
// the stream again until the gap is filled (for up to a second).
func (s *Server) fillGap(ctx context.Context, id string, out *sseStream, seq uint64) error {
	below := func(d delivery) (bool, error) {
		if d.head.Seq >= seq {
			return true, nil
		}
		return out.send(d)
	}
	for try := 0; out.sent+1 < seq; try++ {
		if try == 50 {
			return fmt.Errorf("%w: events %d to %d are not in the stream", errReplay, out.sent+1, seq-1)
		}
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if _, err := s.replay(ctx, id, math.MaxUint64, below); err != nil {
			return err
		}
	}
	return nil
}

// Queued is the SSE event that tells a client where its job waits: not a
// job event (it has no seq and is not stored), so it carries no SSE id.
type Queued struct {
	Type     string    `json:"type"`
	JobID    string    `json:"job_id"`
	Position int       `json:"position"`
	TS       time.Time `json:"ts"`
}

// tellQueued sends the job's place in the queue, if it is still queued.
func (s *Server) tellQueued(ctx context.Context, id string, out *sseStream) error {
	pos, err := s.queuePosition(ctx, id)
	if err != nil || pos == 0 {
		return nil // running by now, or the queue unreadable for a moment
	}
	data, _ := json.Marshal(Queued{Type: "queued", JobID: id, Position: pos, TS: time.Now().UTC()})
	return out.write([]byte("event: queued\ndata: " + string(data) + "\n\n"))
}

// watchLive registers for the job's live events, or answers 503.
func (s *Server) watchLive(ctx context.Context, w http.ResponseWriter, id string) (*watcher, bool) {
	live, err := s.hub.watch(ctx, id)
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
		return false, fmt.Errorf("%w: %w", errReplay, err)
	}
	subject := jobs.EventsSubject(id)
	for seq := uint64(1); seq <= through; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil // aged out meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("%w: event %d: %w", errReplay, seq, err)
		}
		if msg.Sequence > through {
			return false, nil
		}
		d, err := decodeDelivery(id, msg.Data)
		if err != nil {
			s.hub.refused.tell(s.log, id, err)
		} else if done, err := send(d); err != nil || done {
			return done, err
		}
		seq = msg.Sequence + 1
	}
	return false, nil
}

// awaitFirst waits NotFoundWait for a job that is not known yet to show its
// first event, or to turn up in the queue.
func (s *Server) awaitFirst(ctx context.Context, id string, live *watcher) bool {
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

// Why a stream is cut short, besides the client leaving.
var (
	// errClientBehind: the client did not take its events in time.
	errClientBehind = errors.New("slow client")
	// errReplay: the job's stored events could not be read.
	errReplay = errors.New("replaying the stored events")
)

// cutShort tells why a stream ended before its terminal event: the client
// did not keep up (a write timed out, which also ends the request's
// context, or its queue overflowed), left (which may cancel the job), or
// the stored events could not be read.
func (s *Server) cutShort(ctx context.Context, id string, o streamOptions, err error) {
	switch {
	case errors.Is(err, errClientBehind), errors.Is(err, os.ErrDeadlineExceeded):
		s.met.dropped.Inc()
		s.log.Warn().Err(err).Str("job_id", id).Dur("write_timeout", s.cfg.WriteTimeout).Msg("slow client dropped")
	case ctx.Err() != nil:
		s.clientGone(id, o)
	case errors.Is(err, errReplay):
		s.log.Error().Err(err).Str("job_id", id).Msg("stream ended: the job's stored events could not be read")
	default:
		s.log.Warn().Err(err).Str("job_id", id).Msg("stream ended: writing to the client failed")
	}
}

func (s *Server) clientGone(id string, o streamOptions) {
	if !o.cancelOnGone {
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
	// firstToken, when set, is called once the first token is written.
	firstToken func()
}

// send writes an event the client does not have yet, and reports whether
// it was the terminal one.
func (out *sseStream) send(d delivery) (bool, error) {
	if d.head.Seq > out.sent {
		if err := out.write(frame(&d)); err != nil {
			return false, err
		}
		out.sent = d.head.Seq
		if d.head.Type == jobs.TypeToken && out.firstToken != nil {
			out.firstToken()
			out.firstToken = nil
		}
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
