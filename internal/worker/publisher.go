package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
)

// history is what the events stream already holds of a job.
type history struct {
	seq       uint64 // the job's last event seq, 0 for none
	streamSeq uint64 // that event's stream sequence, 0 for none
	terminal  bool
}

// lastEvent reads the last event of a job from the events stream.
func lastEvent(ctx context.Context, stream jetstream.Stream, jobID string) (history, error) {
	msg, err := jobs.LastEvent(ctx, stream, jobID)
	if err != nil || msg == nil {
		return history{}, err
	}
	var h jobs.Header
	if err := json.Unmarshal(msg.Data, &h); err != nil {
		return history{}, fmt.Errorf("read the events of job %s: %w", jobID, err)
	}
	return history{seq: h.Seq, streamSeq: msg.Sequence, terminal: h.Type.Terminal()}, nil
}

var (
	// errRaced says another publisher wrote the job's subject before the
	// first event: a cancel of a queued job, or the same job taken twice.
	errRaced = errors.New("another event reached the job's subject first")
	// errLost says another writer wrote the job's subject after this
	// worker's events began: the job was given to another worker.
	errLost = errors.New("the job was given to another worker")
)

// storeTimeout bounds how long one event may take to be stored, retries
// included: long enough for a cluster to elect a new stream leader.
const storeTimeout = 30 * time.Second

// publisher writes one job's events in order, numbering them without gaps.
//
// Every event is published on the condition that the job's subject still
// ends with the event before it, and the next waits for its
// acknowledgement. That makes the stream the judge of who writes a job: a
// worker that lost its job (another worker's started came in between)
// has its next event refused and stops; and no event is ever stored out of
// order, twice, or after a lost one, whatever the cluster does (a retried
// event that was stored already is refused, and found to be ours).
type publisher struct {
	js      jetstream.JetStream
	events  jetstream.Stream
	jobID   string
	subject string
	seq     uint64 // the last event's seq
	last    uint64 // its stream sequence: what the next event expects
	opened  bool   // an event of ours is stored
	err     error
	// header, when set, goes on every event: the job's trace context.
	header nats.Header
}

func newPublisher(js jetstream.JetStream, events jetstream.Stream, jobID string, h history) *publisher {
	return &publisher{js: js, events: events, jobID: jobID, subject: jobs.EventsSubject(jobID), seq: h.seq, last: h.streamSeq}
}

// withHeader puts h on every event the publisher stores.
func (p *publisher) withHeader(h nats.Header) *publisher {
	p.header = h
	return p
}

// publish numbers ev and stores it. It returns errRaced when the subject
// moved before the first event (nothing was stored: the caller may look
// again), and after any other failure it stores nothing more.
func (p *publisher) publish(ctx context.Context, ev jobs.Event) error {
	if p.err != nil {
		return p.err
	}
	h := ev.Head()
	h.JobID = p.jobID
	h.Seq = p.seq + 1
	if h.TS.IsZero() {
		h.TS = time.Now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		p.err = fmt.Errorf("encode %s event: %w", h.Type, err)
		return p.err
	}
	seq, err := p.store(ctx, data)
	if errors.Is(err, errRaced) && !p.opened {
		return errRaced
	}
	if errors.Is(err, errRaced) {
		err = errLost
	}
	if err != nil {
		p.err = fmt.Errorf("publish %s event %d: %w", h.Type, h.Seq, err)
		return p.err
	}
	p.seq, p.last, p.opened = p.seq+1, seq, true
	return nil
}

// store publishes one event after the last, retrying what may be a passing
// failure (a leader election, a reconnect), and returns its stream
// sequence.
func (p *publisher) store(ctx context.Context, data []byte) (uint64, error) {
	// A job's end is stored however the job ended: its context may be
	// cancelled already.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		// The publish adds its own headers: each event gets its copy.
		msg := &nats.Msg{Subject: p.subject, Data: data, Header: maps.Clone(p.header)}
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(p.last))
		if err == nil {
			return ack.Sequence, nil
		}
		if wrongLast(err) {
			// Perhaps an earlier try of this very event was stored.
			if msg, rerr := jobs.LastEvent(ctx, p.events, p.jobID); rerr == nil && msg != nil && bytes.Equal(msg.Data, data) {
				return msg.Sequence, nil
			}
			return 0, errRaced
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		}
	}
}

func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Narrate makes the publisher a narration sink for the job's subject.
func (p *publisher) Narrate(n *jobs.Narration) {
	p.publish(context.Background(), n) // a failure is kept for wait
}

// failure is the first failure to store an event, if any: every event
// is stored by the time publish returns, so there is nothing to wait for.
func (p *publisher) failure() error { return p.err }
