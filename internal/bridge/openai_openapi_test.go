package bridge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/discovery"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// checkOpenAI is check for the OpenAI routes: a stream's data lines are
// chunks (or an error), then [DONE].
func (c *contract) checkOpenAI(validRequest bool, method, path, body string, header ...string) (int, []byte) {
	c.t.Helper()
	header = append([]string{"Content-Type", "application/json"}, header...)
	resp, data := c.exchange(validRequest, method, path, func() io.Reader { return strings.NewReader(body) }, header)
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		chunk := "Completion"
		if strings.Contains(path, "/chat/") {
			chunk = "ChatCompletionChunk"
		}
		c.checkChunks(data, chunk)
	}
	return resp.StatusCode, data
}

// checkChunks validates each data line of an OpenAI stream.
func (c *contract) checkChunks(stream []byte, chunk string) {
	c.t.Helper()
	n := 0
	for line := range strings.Lines(string(stream)) {
		data, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			c.t.Fatalf("data line %q: %v", data, err)
		}
		schema := chunk
		if _, isError := v["error"]; isError {
			schema = "OpenAIError"
		}
		if err := c.doc.Components.Schemas[schema].Value.VisitJSON(map[string]any(v), openapi3.EnableJSONSchema2020()); err != nil {
			c.t.Fatalf("data line breaks the %s schema: %v\n%s", schema, err, data)
		}
		n++
	}
	if n == 0 {
		c.t.Fatal("a stream without chunks")
	}
}

// fakeWorker announces testModel on discovery and answers each job the
// bridge queues with the events script writes, as a worker would.
func fakeWorker(t *testing.T, h *harness, script func(id string, s *eventWriter)) {
	t.Helper()
	svc, err := discovery.Register(h.nc, discovery.Instance{WorkerID: "fake", Model: testModel, Slots: 1},
		func(context.Context) discovery.Status { return discovery.Status{WorkerID: "fake", Model: testModel} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	sub, err := h.nc.Subscribe(jobs.ExecuteSubject, func(m *nats.Msg) {
		var req jobs.Request
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Error(err)
			return
		}
		go script(req.JobID, &eventWriter{t: t, h: h, id: req.JobID})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
}

// eventWriter publishes a job's events from any goroutine.
type eventWriter struct {
	t   *testing.T
	h   *harness
	id  string
	seq uint64
}

func (w *eventWriter) publish(ev jobs.Event) *eventWriter {
	w.seq++
	h := ev.Head()
	h.JobID, h.Seq, h.TS = w.id, w.seq, time.Now().UTC()
	data, _ := json.Marshal(ev)
	if _, err := w.h.js.Publish(context.Background(), jobs.EventsSubject(w.id), data); err != nil {
		w.t.Error(err)
	}
	return w
}

func (w *eventWriter) started() *eventWriter {
	return w.publish(&jobs.Started{Header: jobs.Header{Type: jobs.TypeStarted}, Model: testModel, WorkerID: "fake", Attempt: 1})
}

func (w *eventWriter) token(t string, i int) *eventWriter {
	return w.publish(&jobs.Token{Header: jobs.Header{Type: jobs.TypeToken}, T: t, I: i})
}

func (w *eventWriter) end(reason jobs.StopReason) *eventWriter {
	return w.publish(&jobs.End{Header: jobs.Header{Type: jobs.TypeEnd}, TokensIn: 3, TokensOut: 1, StopReason: reason})
}

func (w *eventWriter) fail(code jobs.Code) *eventWriter {
	return w.publish(&jobs.ErrorEvent{Header: jobs.Header{Type: jobs.TypeError}, Error: jobs.Error{Code: code, Message: "boom"}})
}

// openAIContracts checks the OpenAI routes' responses against openapi.yaml
// and returns the exchanges seen: a real worker's answers, a scripted
// worker's failures, no worker at all, and a bridge with a token.
func openAIContracts(t *testing.T) map[string]bool {
	seen := map[string]bool{}
	const chat, completions = "/v1/chat/completions", "/v1/completions"
	chatBody := func(extra string) string {
		return `{"model":"` + testModel + `","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":12,"temperature":0` + extra + `}`
	}
	textBody := `{"model":"` + testModel + `","prompt":"Once upon a time","max_tokens":12}`

	h := startBridge(t, bridge.Config{})
	testutil.StartWorker(t, h.natsURL)
	c := newContract(t, h)
	c.checkOpenAI(true, http.MethodGet, "/v1/models", "")
	c.checkOpenAI(true, http.MethodGet, "/v1/models/"+testModel, "")
	c.checkOpenAI(true, http.MethodGet, "/v1/models/nope", "")
	c.checkOpenAI(true, http.MethodPost, chat, chatBody(""))
	c.checkOpenAI(true, http.MethodPost, chat, chatBody(`,"stream":true,"stream_options":{"include_usage":true}`), "X-Narration", "true")
	c.checkOpenAI(true, http.MethodPost, chat, chatBody(`,"response_format":{"type":"json_object"},"max_tokens":100`))
	c.checkOpenAI(false, http.MethodPost, chat, chatBody(`,"n":2`))
	c.checkOpenAI(false, http.MethodPost, chat, chatBody(`,"nope":1`))
	c.checkOpenAI(true, http.MethodPost, chat, `{"model":"nope","messages":[{"role":"user","content":"x"}]}`)
	c.checkOpenAI(false, http.MethodPost, chat, `{"messages":[{"role":"user","content":"`+strings.Repeat("a", bridge.DefaultMaxBodyBytes)+`"}]}`)
	c.checkOpenAI(true, http.MethodPost, completions, textBody)
	c.checkOpenAI(true, http.MethodPost, completions, strings.Replace(textBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1), "X-Narration", "true")
	c.checkOpenAI(false, http.MethodPost, completions, strings.Replace(textBody, `"max_tokens"`, `"echo":true,"max_tokens"`, 1))
	c.checkOpenAI(true, http.MethodPost, completions, strings.Replace(textBody, testModel, "nope", 1))

	// A scripted worker fails in every way a job can.
	fh := startBridge(t, bridge.Config{})
	outcomes := make(chan func(*eventWriter), 1)
	fakeWorker(t, fh, func(id string, w *eventWriter) { (<-outcomes)(w) })
	fc := newContract(t, fh)
	for _, o := range []struct {
		body   string
		status int
		events func(*eventWriter)
	}{
		{chatBody(""), http.StatusConflict, func(w *eventWriter) { w.started().end(jobs.StopCancelled) }},
		{chatBody(""), http.StatusGatewayTimeout, func(w *eventWriter) { w.started().end(jobs.StopTimeout) }},
		{chatBody(""), http.StatusInternalServerError, func(w *eventWriter) { w.started().fail(jobs.InferenceFailed) }},
		{chatBody(""), http.StatusBadRequest, func(w *eventWriter) { w.fail(jobs.ContextOverflow) }},
		{chatBody(`,"stream":true`), http.StatusOK, func(w *eventWriter) { w.started().token("Once", 0).fail(jobs.InferenceFailed) }},
		{chatBody(`,"stream":true`), http.StatusOK, func(w *eventWriter) { w.started().token("Once", 0).end(jobs.StopCancelled) }},
	} {
		outcomes <- o.events
		if code, body := fc.checkOpenAI(true, http.MethodPost, chat, o.body); code != o.status {
			t.Fatalf("scripted %d: got %d %s", o.status, code, body)
		}
	}

	// A full queue: the scripted worker takes nothing from JOBS, so the
	// first job fills its pool's one place.
	full := startBridge(t, bridge.Config{})
	if err := jobs.EnsureStreams(context.Background(), full.js, jobs.StreamOptions{MaxQueued: 1}); err != nil {
		t.Fatal(err)
	}
	fakeWorker(t, full, func(id string, w *eventWriter) { w.started().token("Once", 0).end(jobs.StopEOS) })
	qc := newContract(t, full)
	qc.checkOpenAI(true, http.MethodPost, chat, chatBody(""))
	if code, body := qc.checkOpenAI(true, http.MethodPost, chat, chatBody("")); code != http.StatusTooManyRequests {
		t.Fatalf("a second job in a full pool: %d %s; want 429", code, body)
	}
	qc.checkOpenAI(true, http.MethodPost, completions, textBody)

	// No worker at all.
	idle := newContract(t, startBridge(t, bridge.Config{}))
	idle.checkOpenAI(true, http.MethodPost, chat, chatBody(""))
	idle.checkOpenAI(true, http.MethodPost, completions, textBody)

	auth := newContract(t, startBridge(t, bridge.Config{AuthToken: "t"}))
	auth.checkOpenAI(true, http.MethodGet, "/v1/models", "")
	auth.checkOpenAI(true, http.MethodGet, "/v1/models/"+testModel, "")
	auth.checkOpenAI(true, http.MethodPost, chat, chatBody(""))
	auth.checkOpenAI(true, http.MethodPost, completions, textBody)

	for _, cc := range []*contract{c, fc, qc, idle, auth} {
		for k := range cc.seen {
			seen[k] = true
		}
	}
	return seen
}
