package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/narrated/llmworker/internal/testutil"
)

func noEnv(string) string { return "" }

func TestSubmitShowsTheJob(t *testing.T) {
	_, url := testutil.StartNATS(t)
	testutil.StartWorker(t, url)
	var out bytes.Buffer
	if err := run([]string{"-nats", url, "-prompt", "Once upon a time", "-max-tokens", "25", "-temperature", "0"}, noEnv, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"▶️  Started on test-worker", "✅ Request validated", "🍰 Tokenized prompt",
		"Once upon a time, there was a little girl named Lily", "🎯 Generated 10 tokens", "🎉 Complete! (25 tokens", "🏁 max_tokens"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Narration never splits a word of the story.
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "   🎯") {
			continue
		}
		if strings.HasSuffix(line, "Lil") || strings.HasSuffix(line, "outsid") {
			t.Errorf("a word was split: %q", line)
		}
	}
}

func TestSubmitRefusesBadInput(t *testing.T) {
	err := run([]string{"-nats", "nats://127.0.0.1:1", "-prompt", ""}, noEnv, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "prompt") {
		t.Errorf("err = %v, want a prompt error", err)
	}
	err = run([]string{"-nats", "nats://127.0.0.1:1", "-job-id", "a.b"}, noEnv, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "job_id") {
		t.Errorf("err = %v, want a job_id error", err)
	}
}
