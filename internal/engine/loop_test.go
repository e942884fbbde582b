package engine

import (
	"testing"
	"time"
)

// admitting runs l.admit on its own goroutine and returns what it reports
// once it returns.
func admitting(l *loop) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- l.admit() }()
	return done
}

func testLoop(parallel int, step, gatherMax time.Duration) *loop {
	e := &Engine{cfg: Config{Parallel: parallel}, submit: make(chan *sequence), quit: make(chan struct{})}
	l := newLoop(e, nil)
	l.step, l.gatherMax = step, gatherMax
	return l
}

func testSequence() *sequence {
	return &sequence{pending: []int{1, 2, 3}, maxTokens: 4, mail: newMailbox()}
}

// Jobs that reach an idle loop one after another, within the gathering
// window, are admitted together: they start in the same decode step.
func TestIdleLoopGathersJobsSentTogether(t *testing.T) {
	l := testLoop(4, time.Hour, time.Hour) // a window that only a full set of slots ends
	done := admitting(l)
	for i := range 4 {
		seq := testSequence()
		select {
		case l.e.submit <- seq:
		case <-time.After(time.Minute):
			t.Fatalf("the loop stopped taking jobs after %d; want all 4 in one admission", i)
		}
		seq.mail.take(nil) // its slot
	}
	if !<-done || l.active != 4 {
		t.Fatalf("admitted %d, want 4", l.active)
	}
}

// A lone job waits no longer than the window; a loop that has no step
// time yet does not wait at all.
func TestIdleLoopWaitsOnlyTheWindow(t *testing.T) {
	for _, step := range []time.Duration{0, 8 * time.Millisecond} {
		l := testLoop(4, step, time.Hour)
		done := admitting(l)
		l.e.submit <- testSequence()
		if !<-done || l.active != 1 {
			t.Fatalf("step %v: admitted %d, want 1", step, l.active)
		}
	}
}

// A closing engine ends the wait.
func TestGatheringEndsOnClose(t *testing.T) {
	l := testLoop(4, time.Hour, time.Hour)
	done := admitting(l)
	l.e.submit <- testSequence()
	close(l.e.quit)
	if <-done {
		t.Fatal("admit reported true after close")
	}
}
