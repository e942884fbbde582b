package engine

import (
	"slices"
	"testing"
	"time"
)

// pieces is what take hands over when a wake-up waits, or nil when none
// does (take would wait).
func pieces(m *mailbox, spare []update) []update {
	if len(m.ready) == 0 {
		return nil
	}
	return m.take(spare)
}

func texts(us []update) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.text)
	}
	return out
}

// The loop wakes a caller at once for what is urgent, at most once per
// wakeEvery for the rest, and before a step that would keep a waiting
// update past wakeEvery; the caller gets every update, in order.
func TestMailboxWakesAtMostOncePerWakeEvery(t *testing.T) {
	m := newMailbox()
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	m.put(update{text: "a"}, at(0), true)
	got := pieces(m, nil)
	if want := []string{"a"}; !slices.Equal(texts(got), want) {
		t.Fatalf("after an urgent put: %q, want %q", texts(got), want)
	}
	m.put(update{text: "b"}, at(200*time.Microsecond), false)
	m.put(update{text: "c"}, at(400*time.Microsecond), false)
	if got := pieces(m, nil); got != nil {
		t.Fatalf("woken %v after the last wake-up for %q; want to wait until %v", 400*time.Microsecond, texts(got), wakeEvery)
	}
	m.flush(at(500*time.Microsecond), 100*time.Microsecond)
	if got := pieces(m, nil); got != nil {
		t.Fatalf("woken before a short step for %q; the next put comes in time", texts(got))
	}
	m.flush(at(500*time.Microsecond), 600*time.Microsecond)
	got = pieces(m, got)
	if want := []string{"b", "c"}; !slices.Equal(texts(got), want) {
		t.Fatalf("before a step that ends past wakeEvery: %q, want %q", texts(got), want)
	}
	m.put(update{text: "d"}, at(600*time.Microsecond), false)
	m.put(update{text: "e"}, at(1600*time.Microsecond), false)
	if want := []string{"d", "e"}; !slices.Equal(texts(pieces(m, got)), want) {
		t.Fatalf("a put wakeEvery after the last wake-up: want %q at once", want)
	}
	m.flush(at(time.Hour), time.Hour)
	if got := pieces(m, nil); len(got) != 0 {
		t.Fatalf("flushed with nothing waiting: %q", texts(got))
	}
}
