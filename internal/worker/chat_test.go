package worker_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// A native job may carry a chat instead of a prompt: the worker renders it
// with the model's template (the plain format for the test model), so it
// generates what the rendered prompt generates.
func TestChatJob(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	chat := greedyJob("chat", "", 20)
	chat.Messages = []jobs.Message{{Role: jobs.RoleSystem, Content: "Tell a story."}, {Role: jobs.RoleUser, Content: "Once upon a time"}}
	testutil.Submit(t, e.js, jobs.ExecuteSubject, chat)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, greedyJob("rendered", "System: Tell a story.\n\nUser: Once upon a time\n\nAssistant:", 20))
	got := summarize(t, testutil.Events(t, e.js, "chat", 30*time.Second))
	want := summarize(t, testutil.Events(t, e.js, "rendered", 30*time.Second))
	if got.text == "" || got.text != want.text || got.end(t).TokensIn != want.end(t).TokensIn {
		t.Fatalf("chat gave %q (%d prompt tokens); its rendered prompt gives %q (%d)", got.text, got.end(t).TokensIn, want.text, want.end(t).TokensIn)
	}
}

// A native job's json_schema constrains its output; a schema llama.cpp
// cannot use is refused naming the field.
func TestJSONSchemaJob(t *testing.T) {
	e := setup(t)
	testutil.StartWorker(t, e.url)
	req := greedyJob("json", "Once upon a time", 120)
	req.Temperature = ptr(1.0)
	req.JSONSchema = json.RawMessage(`{"type":"object","properties":{"name":{"type":"string","maxLength":10},"n":{"type":"integer"}},"required":["name","n"],"additionalProperties":false}`)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, req)
	s := summarize(t, testutil.Events(t, e.js, "json", 30*time.Second))
	var v struct {
		Name *string
		N    *int
	}
	if err := json.Unmarshal([]byte(s.text), &v); err != nil || v.Name == nil || v.N == nil || s.end(t).StopReason != jobs.StopEOS {
		t.Fatalf("output %q (%s) does not match the schema: %v", s.text, s.end(t).StopReason, err)
	}

	bad := greedyJob("bad-schema", "Once", 8)
	bad.JSONSchema = json.RawMessage(`{"$ref":"#/nowhere"}`)
	testutil.Submit(t, e.js, jobs.ExecuteSubject, bad)
	last := summarize(t, testutil.Events(t, e.js, "bad-schema", 30*time.Second)).last
	if ev, ok := last.(*jobs.ErrorEvent); !ok || ev.Code != jobs.InvalidRequest || ev.Field != "json_schema" {
		t.Fatalf("last event %+v; want INVALID_REQUEST naming json_schema", last)
	}
}
