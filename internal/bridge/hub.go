package bridge

import (
	"context"
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
// to the watchers of each job. A JetStream consumer per client would not
// do: a stream takes 1,000 consumers by default, shared by every bridge.
type hub struct {
	js  jetstream.JetStream
	log zerolog.Logger

	// starting is held while the consumer is created, a network call:
	// concurrent first watchers wait for one consumer, while dispatch and
	// unwatch, which take only mu, go on.
	starting sync.Mutex

	refused refusals

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	closed   bool
	watchers map[string]map[*watcher]struct{}
}

// errHubClosed refuses a watch after close.
var errHubClosed = errors.New("the bridge is shutting down")

// delivery is one event as it comes from the stream.
type delivery struct {
	head jobs.Header
	data []byte
}

// watcher is one client's queue of a job's live events.
type watcher struct {
	mu      sync.Mutex
	queue   []delivery
	dropped bool
	wake    chan struct{} // holds a token while the queue has news
}

func newHub(js jetstream.JetStream, log zerolog.Logger) *hub {
	return &hub{js: js, log: log, watchers: make(map[string]map[*watcher]struct{})}
}

// watch registers a watcher of the job's live events, starting the hub's
// consumer if it is not running yet. Any event stored after watch returns
// reaches the watcher. After close it fails with errHubClosed.
func (h *hub) watch(ctx context.Context, id string) (*watcher, error) {
	if err := h.start(ctx); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	wt := &watcher{wake: make(chan struct{}, 1)}
	if h.watchers[id] == nil {
		h.watchers[id] = make(map[*watcher]struct{})
	}
	h.watchers[id][wt] = struct{}{}
	return wt, nil
}

func (h *hub) unwatch(id string, wt *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers[id], wt)
	if len(h.watchers[id]) == 0 {
		delete(h.watchers, id)
	}
}

// start creates and runs the hub's consumer unless it runs already.
func (h *hub) start(ctx context.Context) error {
	h.starting.Lock()
	defer h.starting.Unlock()
	h.mu.Lock()
	running, closed := h.cc != nil, h.closed
	h.mu.Unlock()
	switch {
	case closed:
		return errHubClosed
	case running:
		return nil
	}
	cc, err := h.consume(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	closed = h.closed
	if !closed {
		h.cc = cc
	}
	h.mu.Unlock()
	if closed {
		stop(cc)
		return errHubClosed
	}
	return nil
}

// consume creates the ordered consumer and delivers its events to dispatch.
func (h *hub) consume(ctx context.Context) (jetstream.ConsumeContext, error) {
	cons, err := h.js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{jobs.EventsPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, err
	}
	return cons.Consume(h.dispatch, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			h.log.Warn().Err(err).Msg("following the events stream")
		}
	}))
}

// dispatch hands an event to its job's watchers without ever waiting for
// one. Only an event someone watches is decoded.
func (h *hub) dispatch(m jetstream.Msg) {
	id := jobs.JobIDFromSubject(m.Subject())
	h.mu.Lock()
	watched := len(h.watchers[id]) > 0
	h.mu.Unlock()
	if !watched {
		return // a watcher that comes later reads this event from the stream
	}
	d, err := decodeDelivery(id, m.Data())
	if err != nil {
		h.refused.tell(h.log, id, err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for wt := range h.watchers[id] {
		wt.push(d)
	}
}

// close stops the hub's consumer, waits until it has stopped, and refuses
// any later watch.
func (h *hub) close() {
	h.mu.Lock()
	cc := h.cc
	h.cc, h.closed = nil, true
	h.mu.Unlock()
	if cc != nil {
		stop(cc)
	}
}

func stop(cc jetstream.ConsumeContext) {
	cc.Stop()
	<-cc.Closed()
}

func (wt *watcher) push(d delivery) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.dropped {
		return
	}
	if len(wt.queue) >= maxQueued {
		wt.dropped, wt.queue = true, nil
	} else {
		wt.queue = append(wt.queue, d)
	}
	select {
	case wt.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events, and whether the watcher fell too far
// behind and was dropped.
func (wt *watcher) take() ([]delivery, bool) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	q := wt.queue
	wt.queue = nil
	return q, wt.dropped
}
