package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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

// errRaced says another publisher wrote the job's subject first: a cancel
// of a queued job, or the same job taken twice.
var errRaced = errors.New("another event reached the job's subject first")

// publisher writes one job's events in order, numbering them without gaps.
// The first event is published only if the subject still ends where the
// job's history said, so two writers never interleave; the rest go out
// asynchronously, and wait collects every acknowledgement.
type publisher struct {
	js      jetstream.JetStream
	jobID   string
	subject string
	seq     uint64
	expect  *uint64
	pending []jetstream.PubAckFuture
	err     error
}

func newPublisher(js jetstream.JetStream, jobID string, h history) *publisher {
	return &publisher{js: js, jobID: jobID, subject: jobs.EventsSubject(jobID), seq: h.seq, expect: &h.streamSeq}
}

// publish numbers ev and sends it. After a failure it sends nothing more.
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
	if p.expect != nil {
		_, err := p.js.Publish(ctx, p.subject, data, jetstream.WithExpectLastSequencePerSubject(*p.expect))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return errRaced // nothing sent: the caller may look again
		}
		if err != nil {
			p.err = fmt.Errorf("publish %s event: %w", h.Type, err)
			return p.err
		}
		p.expect = nil
	} else {
		f, err := p.js.PublishAsync(p.subject, data)
		if err != nil {
			p.err = fmt.Errorf("publish %s event: %w", h.Type, err)
			return p.err
		}
		p.pending = append(p.pending, f)
	}
	p.seq++
	return nil
}

// Narrate makes the publisher a narration sink for the job's subject.
func (p *publisher) Narrate(n *jobs.Narration) {
	p.publish(context.Background(), n) // a failure is kept for wait
}

// wait returns once every event is acknowledged by the stream, or with the
// first failure.
func (p *publisher) wait(ctx context.Context) error {
	for _, f := range p.pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			p.err = fmt.Errorf("store event: %w", err)
		case <-ctx.Done():
			p.err = fmt.Errorf("store events: %w", ctx.Err())
		}
		if p.err != nil {
			break
		}
	}
	p.pending = nil
	return p.err
}
