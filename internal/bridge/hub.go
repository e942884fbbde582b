package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/jobs"
)

// maxQueued bounds the events waiting for one client: a client that falls
// further behind is dropped (it may resume with Last-Event-ID), so a stuck
// client costs bounded memory and never holds back the others.
const maxQueued = 4096

// hub follows the live events of every job once for the whole bridge: one
// ordered consumer on JOB_EVENTS, delivering new events only, fanned out
// to the followers of each job. A JetStream consumer per client would not
// do: a stream takes 1,000 consumers by default, shared by every bridge.
type hub struct {
	js  jetstream.JetStream
	log zerolog.Logger

	mu        sync.Mutex
	cc        jetstream.ConsumeContext
	followers map[string]map[*follower]struct{}
}

// delivery is one event as it comes from the stream.
type delivery struct {
	head jobs.Header
	data []byte
}

// follower is one client's queue of a job's live events.
type follower struct {
	mu      sync.Mutex
	queue   []delivery
	dropped bool
	wake    chan struct{} // holds a token while the queue has news
}

func newHub(js jetstream.JetStream, log zerolog.Logger) *hub {
	return &hub{js: js, log: log, followers: make(map[string]map[*follower]struct{})}
}

// follow registers a follower of the job's live events, starting the hub's
// consumer if it is not running yet. Any event stored after follow returns
// reaches the follower.
func (h *hub) follow(ctx context.Context, id string) (*follower, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cc == nil {
		if err := h.start(ctx); err != nil {
			return nil, err
		}
	}
	f := &follower{wake: make(chan struct{}, 1)}
	if h.followers[id] == nil {
		h.followers[id] = make(map[*follower]struct{})
	}
	h.followers[id][f] = struct{}{}
	return f, nil
}

func (h *hub) unfollow(id string, f *follower) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.followers[id], f)
	if len(h.followers[id]) == 0 {
		delete(h.followers, id)
	}
}

// start creates the hub's consumer; h.mu is held.
func (h *hub) start(ctx context.Context) error {
	cons, err := h.js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{jobs.EventsPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(h.dispatch, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			h.log.Warn().Err(err).Msg("following the events stream")
		}
	}))
	if err != nil {
		return err
	}
	h.cc = cc
	return nil
}

// dispatch hands an event to its job's followers without ever waiting
// for one.
func (h *hub) dispatch(m jetstream.Msg) {
	d := delivery{data: m.Data()}
	if err := json.Unmarshal(d.data, &d.head); err != nil || d.head.Seq == 0 {
		h.log.Warn().Str("subject", m.Subject()).Msg("skipping a message that is not an event")
		return
	}
	id := jobs.JobIDFromSubject(m.Subject())
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.followers[id] {
		f.push(d)
	}
}

// close stops the hub's consumer and waits until it has stopped.
func (h *hub) close() {
	h.mu.Lock()
	cc := h.cc
	h.cc = nil
	h.mu.Unlock()
	if cc != nil {
		cc.Stop()
		<-cc.Closed()
	}
}

func (f *follower) push(d delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropped {
		return
	}
	if len(f.queue) >= maxQueued {
		f.dropped, f.queue = true, nil
	} else {
		f.queue = append(f.queue, d)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events, and whether the follower fell too far
// behind and was dropped.
func (f *follower) take() ([]delivery, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queue
	f.queue = nil
	return q, f.dropped
}
