package bridge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// browser starts headless Chromium (Debian's chromium) for the test. In CI
// a missing browser fails the test; elsewhere it skips it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium missing in CI (apt-get install -y chromium): %v", err)
		}
		t.Skipf("chromium missing (apt-get install -y chromium): %v", err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitPage waits until the JavaScript condition holds on the page.
func waitPage(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		status := eval[string](t, ctx, `document.getElementById("status").textContent`)
		t.Fatalf("waiting for %s (%s): %v; status line %q", what, cond, err, status)
	}
}

func TestPageInChromium(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	ctx := browser(t) // after the bridge, so that its cleanup closes the page's streams first
	if err := chromedp.Do(ctx, chromedp.Navigate(h.URL+"/")); err != nil {
		t.Fatal(err)
	}

	// Cancel works: a job submitted while no worker is up is cancelled from
	// the page, and ends CANCELLED once a worker takes it.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#prompt"), "Once upon a time", chromedp.AtLeast(1)),
		chromedp.Click(chromedp.CSS("#go")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, "the job queued", `document.getElementById("status").textContent.startsWith("Queued as ")`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#cancel"))); err != nil {
		t.Fatal(err)
	}
	firstID := eval[string](t, ctx, `job.id`)
	waitPage(t, ctx, "the cancel stored", `document.getElementById("status").textContent.startsWith("Cancel requested")`)
	if _, err := h.cancelStored(firstID); err != nil {
		t.Fatalf("the page's cancel of %s was not stored: %v", firstID, err)
	}
	testutil.StartWorker(t, h.natsURL)
	waitPage(t, ctx, "the job cancelled", `document.getElementById("status").textContent === "Cancelled."`)

	// A story: the narration lines and the text appear as the events come.
	eval[any](t, ctx, `document.getElementById("prompt").value = ""; document.getElementById("max_tokens").value = ""`)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#prompt"), "The little dog", chromedp.AtLeast(1)),
		chromedp.SendKeys(chromedp.CSS("#max_tokens"), "60", chromedp.AtLeast(1)),
		chromedp.Click(chromedp.CSS("#go")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, "the story done", `document.getElementById("status").textContent.startsWith("Done: ")`)
	id := eval[string](t, ctx, `job.id`)
	if prompt := eval[string](t, ctx, `document.getElementById("prompt").value`); prompt != "The little dog" {
		t.Fatalf("prompt %q", prompt)
	}
	if id == firstID {
		t.Fatal("the page reused the first job")
	}
	lines := eval[[]string](t, ctx, `[...document.querySelectorAll("#narration li")].map(li => li.textContent)`)
	story := eval[string](t, ctx, `document.getElementById("story").textContent`)

	// What the page shows is exactly what the job's events say.
	_, r := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/"+id+"/events")
	var wantLines []string
	var wantStory strings.Builder
	for _, ev := range decodeAll(t, r.events(t)) {
		switch ev := ev.(type) {
		case *jobs.Narration:
			wantLines = append(wantLines, ev.Cute)
		case *jobs.Token:
			wantStory.WriteString(ev.T)
		}
	}
	if story == "" || story != wantStory.String() {
		t.Fatalf("the page shows the story %q; the job wrote %q", story, wantStory.String())
	}
	got, _ := json.Marshal(lines)
	want, _ := json.Marshal(wantLines)
	if string(got) != string(want) || !strings.Contains(string(got), "✅") || !strings.Contains(string(got), "🎉") {
		t.Fatalf("the page shows the narration %s; the job told %s", got, want)
	}
	t.Logf("page: %d narration lines, %d characters of story", len(lines), len(story))

	if dir := os.Getenv("PAGE_SCREENSHOT_DIR"); dir != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "page.png"), png, 0o644)
		}
		if err != nil {
			t.Logf("screenshot: %v", err)
		}
	}
}
