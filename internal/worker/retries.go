package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
)

// exhausted ends a job whose attempts are used up, before it runs again:
// its events end with an error event RETRIES_EXHAUSTED and its message
// leaves the queue. It reports whether it settled the message.
//
// A delivery after the first means an attempt failed (its worker died,
// stalled past the ack wait, or could not store its events), unless the
// worker handed the job back on shutdown, which its handed_back narration
// on the job's subject tells. So failed attempts are the deliveries before
// this one less the hand-backs; the consumer itself never stops delivering.
func (j *job) exhausted(ctx context.Context) bool {
	delivered := j.attempt()
	if delivered <= j.w.cfg.MaxDeliver {
		return false
	}
	stored, handBacks, err := j.countHandBacks(ctx)
	if err != nil {
		j.settle(err)
		return true
	}
	if stored.terminal {
		return false // open drops it
	}
	failed := delivered - 1 - handBacks
	if failed < j.w.cfg.MaxDeliver {
		return false
	}
	j.w.cfg.Metrics.settled(string(jobs.RetriesExhausted), 0, 0, 0)
	j.stored = stored
	j.pub = newPublisher(j.w.js, j.w.events, j.req.JobID, stored).withHeader(j.header)
	msg := fmt.Sprintf("the job failed %d attempts (its workers died, stalled or could not store its events); giving up", failed)
	j.log.Warn().Int("attempts", failed).Msg("retries exhausted; ending the job")
	j.narrator.Tell(j.narration.InferenceFailed(jobs.RetriesExhausted, msg), j.pub)
	j.pub.publish(ctx, &jobs.ErrorEvent{Header: jobs.Header{Type: jobs.TypeError},
		Error: jobs.Error{Code: jobs.RetriesExhausted, Message: msg}})
	j.settle(nil)
	return true
}

// countHandBacks reads the job's stored events and counts its hand-backs
// on shutdown; it also returns the last event it read. It runs only when a
// job comes back more often than it may fail, so reading event by event
// is cheap enough.
func (j *job) countHandBacks(ctx context.Context) (history, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stored, err := lastEvent(ctx, j.w.events, j.req.JobID)
	if err != nil || stored.seq == 0 {
		return stored, 0, err
	}
	handBacks := 0
	for seq := uint64(1); seq <= stored.streamSeq; {
		msg, err := j.w.events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(jobs.EventsSubject(j.req.JobID)))
		if err != nil {
			return stored, 0, fmt.Errorf("read the events of job %s: %w", j.req.JobID, err)
		}
		var n struct {
			jobs.Header
			Action string `json:"action"`
		}
		if json.Unmarshal(msg.Data, &n) == nil && n.Type == jobs.TypeNarration && n.Action == narration.ActionHandedBack {
			handBacks++
		}
		seq = msg.Sequence + 1
	}
	return stored, handBacks, nil
}
