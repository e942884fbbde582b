package jobs

import (
	"testing"
	"time"
)

// A cancel must outlive the job it waits for: a job cancelled while it
// waits in JOBS is dropped when a worker takes it, however long it waited.
func TestCancelOutlivesQueuedJob(t *testing.T) {
	for _, eventsMaxAge := range []time.Duration{0, time.Minute, 48 * time.Hour} {
		ages := map[string]time.Duration{}
		for _, cfg := range StreamConfigs(StreamOptions{EventsMaxAge: eventsMaxAge}) {
			ages[cfg.Name] = cfg.MaxAge
		}
		if ages[CancelStream] < ages[QueueStream] {
			t.Errorf("events max age %s: cancels kept %s, jobs wait up to %s", eventsMaxAge, ages[CancelStream], ages[QueueStream])
		}
	}
}
