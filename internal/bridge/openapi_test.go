package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/narrated/llmworker"
	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
)

func init() {
	for _, ct := range []string{"text/event-stream", "text/html", "application/yaml"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// contract checks real exchanges with a bridge against openapi.yaml.
type contract struct {
	t      *testing.T
	h      *harness
	doc    *openapi3.T
	router routers.Router
	seen   map[string]bool // "METHOD path status" of each checked exchange
}

func newContract(t *testing.T, h *harness) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(llmworker.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: h.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, h: h, doc: doc, router: router, seen: map[string]bool{}}
}

// check makes a request and validates it (when it is meant to be valid)
// and its response against the document; it returns the response body.
func (c *contract) check(validRequest bool, method, path, body string, header ...string) (int, []byte) {
	c.t.Helper()
	return c.checkBody(validRequest, method, path, func() io.Reader { return strings.NewReader(body) }, header...)
}

// checkBody is check with the request's body made by body (called once
// for the exchange, once for the validation).
func (c *contract) checkBody(validRequest bool, method, path string, body func() io.Reader, header ...string) (int, []byte) {
	c.t.Helper()
	resp, data := c.exchange(validRequest, method, path, body, header)
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		c.checkEvents(data)
	}
	return resp.StatusCode, data
}

// exchange makes a request, validates it (when it is meant to be valid)
// and its response against the document, and marks the route and status
// seen; it returns the response and its body.
func (c *contract) exchange(validRequest bool, method, path string, body func() io.Reader, header []string) (*http.Response, []byte) {
	c.t.Helper()
	newReq := func() *http.Request {
		req, err := http.NewRequest(method, c.h.URL+path, body())
		if err != nil {
			c.t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
	resp, err := http.DefaultClient.Do(newReq())
	if err != nil {
		c.t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	req := newReq()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s is not in openapi.yaml: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
	if validRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.t.Fatalf("%s %s: the request breaks openapi.yaml: %v", method, path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Body: io.NopCloser(bytes.NewReader(data)), Options: in.Options}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Fatalf("%s %s: %d %.300s breaks openapi.yaml: %v", method, path, resp.StatusCode, data, err)
	}
	c.seen[method+" "+route.Path+" "+resp.Status[:3]] = true
	return resp, data
}

// checkEvents validates each event of a stream against the Event schema.
func (c *contract) checkEvents(stream []byte) {
	c.t.Helper()
	schema := c.doc.Components.Schemas["Event"].Value
	r := newSSEReader(bytes.NewReader(stream))
	n := 0
	for _, e := range r.events(c.t) {
		var v any
		if err := json.Unmarshal(e.Data, &v); err != nil {
			c.t.Fatal(err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			c.t.Fatalf("event %d (%s) breaks the Event schema: %v\n%s", e.ID, e.Type, err, e.Data)
		}
		n++
	}
	if n == 0 {
		c.t.Fatal("a stream without events")
	}
}

func TestResponsesConformToOpenAPI(t *testing.T) {
	h := startBridge(t, bridge.Config{NotFoundWait: 1})
	c := newContract(t, h)

	c.check(true, http.MethodGet, "/healthz", "")
	c.check(true, http.MethodGet, "/readyz", "")
	c.check(true, http.MethodGet, "/metrics", "")
	c.check(true, http.MethodGet, "/", "")
	if code, doc := c.check(true, http.MethodGet, "/openapi.yaml", ""); code != http.StatusOK || !bytes.Equal(doc, llmworker.OpenAPI) {
		t.Fatal("GET /openapi.yaml does not serve openapi.yaml")
	}

	c.check(true, http.MethodPost, "/v1/jobs", `{"job_id":"a","prompt":"Once","max_tokens":3,"pool":"p1","cancel_on_disconnect":false}`,
		"Content-Type", "application/json", "X-Correlation-Id", "c-1")
	c.check(true, http.MethodPost, "/v1/jobs", `{"job_id":"a","prompt":"Once"}`, "Content-Type", "application/json")
	c.check(false, http.MethodPost, "/v1/jobs", `{"prompt":"Once","nope":1}`, "Content-Type", "application/json")
	c.check(false, http.MethodPost, "/v1/jobs", `{"prompt":"`+strings.Repeat("a", bridge.DefaultMaxBodyBytes)+`"}`, "Content-Type", "application/json")
	c.check(true, http.MethodGet, "/v1/jobs/a", "")
	c.check(true, http.MethodDelete, "/v1/jobs/a", "")
	c.check(true, http.MethodGet, "/v1/jobs/nobody", "")
	c.check(true, http.MethodDelete, "/v1/jobs/nobody", "")
	c.check(false, http.MethodGet, "/v1/jobs/a.b", "")
	c.check(false, http.MethodDelete, "/v1/jobs/a.b", "")

	s := h.script("run").started().narration("request_validated", "✅ Request validated").token("Once")
	c.check(true, http.MethodGet, "/v1/jobs/run", "")
	stop := "THE END"
	s.publish(&jobs.End{Header: s.header(jobs.TypeEnd), TokensOut: 1, StopReason: jobs.StopSequence, StopSequenceMatched: &stop})
	c.check(true, http.MethodGet, "/v1/jobs/run", "")
	c.check(true, http.MethodDelete, "/v1/jobs/run", "")
	c.check(true, http.MethodGet, "/v1/jobs/run/events", "")
	c.check(true, http.MethodGet, "/v1/jobs/run/events", "", "Last-Event-ID", "2")
	c.check(true, http.MethodGet, "/v1/jobs/run/events?last_event_id=3", "")
	c.check(true, http.MethodGet, "/v1/jobs/nobody/events", "")
	c.check(false, http.MethodGet, "/v1/jobs/run/events?last_event_id=-1", "")
	h.script("bad").started().fail()
	c.check(true, http.MethodGet, "/v1/jobs/bad/events", "")
	c.check(true, http.MethodGet, "/v1/jobs/bad", "")

	// A POST that streams (its events stored ahead, so that it ends).
	h.script("streamed").started().token("x").end(jobs.StopMaxTokens)
	c.check(true, http.MethodPost, "/v1/jobs", `{"job_id":"streamed","prompt":"Once"}`, "Content-Type", "application/json", "Accept", "text/event-stream")

	// Pool p1 holds job a: with room for one job a pool, the next is refused.
	if err := jobs.EnsureStreams(context.Background(), h.js, jobs.StreamOptions{MaxQueued: 1}); err != nil {
		t.Fatal(err)
	}
	c.check(true, http.MethodPost, "/v1/jobs", `{"prompt":"Once","pool":"p1"}`, "Content-Type", "application/json")

	if err := h.js.DeleteStream(context.Background(), jobs.QueueStream); err != nil {
		t.Fatal(err)
	}
	c.check(true, http.MethodGet, "/readyz", "")
	c.check(true, http.MethodPost, "/v1/jobs", `{"prompt":"Once"}`, "Content-Type", "application/json")
	if err := h.js.DeleteStream(context.Background(), jobs.EventsStream); err != nil {
		t.Fatal(err)
	}
	c.check(true, http.MethodGet, "/v1/jobs/run", "")
	c.check(true, http.MethodDelete, "/v1/jobs/run", "")
	c.check(true, http.MethodGet, "/v1/jobs/run/events", "")

	auth := startBridge(t, bridge.Config{AuthToken: "t"})
	ca := newContract(t, auth)
	ca.check(true, http.MethodGet, "/v1/jobs/a", "")
	ca.check(true, http.MethodDelete, "/v1/jobs/a", "")
	ca.check(true, http.MethodGet, "/v1/jobs/a/events", "")
	ca.check(true, http.MethodPost, "/v1/jobs", `{"prompt":"Once"}`, "Content-Type", "application/json")
	for k := range ca.seen {
		c.seen[k] = true
	}
	for k := range openAIContracts(t) {
		c.seen[k] = true
	}

	// A body that trickles in, slower than the read timeout: 408.
	slow := startBridge(t, bridge.Config{ReadTimeout: 200 * time.Millisecond})
	cs := newContract(t, slow)
	cs.seen = c.seen
	stalled := make(chan struct{})
	defer close(stalled)
	cs.checkBody(false, http.MethodPost, "/v1/jobs", func() io.Reader {
		return io.MultiReader(strings.NewReader(`{"prompt":`), stallReader(stalled))
	}, "Content-Type", "application/json")

	// Every documented response of every operation was seen for real.
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if !c.seen[method+" "+path+" "+status] {
					t.Errorf("%s %s %s is documented but was not checked", method, path, status)
				}
			}
		}
	}
}

// stallReader blocks every read until done is closed, then ends.
type stallReader chan struct{}

func (r stallReader) Read([]byte) (int, error) {
	<-r
	return 0, io.EOF
}
