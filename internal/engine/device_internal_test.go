package engine

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// captureStderr keeps the last lines written to the process's stderr
// while fn runs, and leaves the os.Stderr variable alone, so concurrent
// captures and readers of os.Stderr do not race (go test -race).
func TestCaptureStderrKeepsTheLastLines(t *testing.T) {
	before := os.Stderr
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			got := captureStderr(func() {
				for _, line := range []string{"one", "two", "", "three", "four"} {
					fmt.Fprintln(os.Stderr, line)
				}
			})
			if got != "two; three; four" {
				t.Errorf("captured %q, want the last three lines", got)
			}
		})
	}
	wg.Wait()
	if os.Stderr != before {
		t.Error("os.Stderr was replaced")
	}
	if got := captureStderr(func() {}); got != "llama.cpp gave no reason" {
		t.Errorf("nothing written: %q", got)
	}
}
