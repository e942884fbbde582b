package worker

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Once shutdown stops answering queued cancels, a cancel that arrives
// starts no answer: the WaitGroup is never added to while, or after, it is
// waited on. (Were one started, it would read the nil events stream.)
func TestNoQueuedCancelAnswerAfterStop(t *testing.T) {
	w := &Worker{log: zerolog.Nop(), answering: true}
	w.stopAnswering()
	w.onQueuedCancel(&nats.Msg{Subject: "jobs.cancel.late"})
	w.answers.Wait()
}
