package engine

import (
	"sync"
	"time"
)

// wakeEvery is how often at most the decode loop wakes a sequence's
// caller for its tokens.
//
// Waking a parked goroutine costs the waker: Go starts another thread for
// it, and on these VMs that system call and the interrupt to the idle core
// took 13–21 µs of the decode loop's thread per token (0.3–0.6 µs with
// nobody to wake), a tenth of stories260K's decode step. So the loop wakes
// a caller for its first token, its slot and its end at once, and for
// later tokens at most once a millisecond: the tokens between go with the
// next wake, and none waits much longer than wakeEvery (see flush). On a
// model whose steps take longer than that, every token wakes its caller.
const wakeEvery = time.Millisecond

// mailbox carries one sequence's updates from the decode loop to the
// caller's goroutine, in order.
type mailbox struct {
	mu    sync.Mutex
	queue []update
	ready chan struct{} // holds a wake-up while updates wait

	// The decode loop's side.
	woken  time.Time // the last wake-up
	unsent bool      // updates were put since
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// put queues u, and wakes the caller when urgent or when its last wake is
// wakeEvery old. It never waits.
func (m *mailbox) put(u update, now time.Time, urgent bool) {
	m.mu.Lock()
	m.queue = append(m.queue, u)
	m.mu.Unlock()
	m.unsent = true
	if urgent || now.Sub(m.woken) >= wakeEvery {
		m.wake(now)
	}
}

// flush wakes the caller for the updates that wait, if the next of them
// would otherwise come after more than wakeEvery: before a decode step
// expected to take step, an update left waiting would go out only after
// it.
func (m *mailbox) flush(now time.Time, step time.Duration) {
	if now.Add(step).Sub(m.woken) >= wakeEvery {
		m.wake(now)
	}
}

func (m *mailbox) wake(now time.Time) {
	if !m.unsent {
		return
	}
	m.unsent, m.woken = false, now
	select {
	case m.ready <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// take waits for a wake-up and returns the updates that came, handing
// spare (the slice the previous take returned, now read) back to the
// mailbox to fill.
func (m *mailbox) take(spare []update) []update {
	<-m.ready
	m.mu.Lock()
	defer m.mu.Unlock()
	got := m.queue
	m.queue = spare[:0]
	return got
}
