package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is a bridge served over real HTTP on a real embedded NATS.
type harness struct {
	t       testing.TB
	URL     string
	natsURL string
	srv     *bridge.Server
	nc      *nats.Conn
	js      jetstream.JetStream

	mu     sync.Mutex
	closed map[string]chan struct{} // by client address: closed when the server closes that connection
}

// startBridge starts NATS with the contract's streams and a bridge on it.
func startBridge(t testing.TB, cfg bridge.Config) *harness {
	t.Helper()
	_, url := testutil.StartNATS(t)
	h := newHarness(t, url, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bridge.CreateMissingStreams(ctx, h.js, 1); err != nil {
		t.Fatal(err)
	}
	return h
}

func newHarness(t testing.TB, natsURL string, cfg bridge.Config) *harness {
	t.Helper()
	nc := testutil.Connect(t, natsURL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(cfg, nc, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, natsURL: natsURL, srv: srv, nc: nc, js: js, closed: map[string]chan struct{}{}}
	t.Cleanup(srv.Close)
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if state == http.StateClosed || state == http.StateHijacked {
			close(h.connClosed(c.RemoteAddr().String()))
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	h.URL = ts.URL
	return h
}

// connClosed is closed when the server has closed the connection from the
// client address addr.
func (h *harness) connClosed(addr string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.closed[addr]
	if !ok {
		ch = make(chan struct{})
		h.closed[addr] = ch
	}
	return ch
}

// client is an HTTP client whose connections are new, and whose local
// address is told through addr, so a test can wait for the server to close
// its connection.
func (h *harness) client(addr *string) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err == nil && addr != nil {
			*addr = c.LocalAddr().String()
		}
		return c, err
	}}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// waitClosed waits until the server closed the connection from addr.
func (h *harness) waitClosed(addr string, within time.Duration) {
	h.t.Helper()
	select {
	case <-h.connClosed(addr):
	case <-time.After(within):
		h.t.Fatalf("the bridge did not close the connection from %s within %v", addr, within)
	}
}

func (h *harness) do(method, path string, body string, header ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, data
}

// script publishes a job's events into JOB_EVENTS as a worker would.
type script struct {
	h   *harness
	id  string
	seq uint64
}

func (h *harness) script(id string) *script { return &script{h: h, id: id} }

func (s *script) header(t jobs.EventType) jobs.Header {
	s.seq++
	return jobs.Header{Type: t, JobID: s.id, Seq: s.seq, TS: time.Now().UTC()}
}

func (s *script) publish(ev jobs.Event) *script {
	s.h.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		s.h.t.Fatal(err)
	}
	if _, err := s.h.js.Publish(context.Background(), jobs.EventsSubject(s.id), data); err != nil {
		s.h.t.Fatal(err)
	}
	return s
}

func (s *script) started() *script {
	return s.publish(&jobs.Started{Header: s.header(jobs.TypeStarted), Model: "stories260K", WorkerID: "w1", Attempt: 1})
}

func (s *script) token(text string) *script {
	return s.publish(&jobs.Token{Header: s.header(jobs.TypeToken), T: text, I: int(s.seq)})
}

func (s *script) narration(action, cute string) *script {
	return s.publish(&jobs.Narration{Header: s.header(jobs.TypeNarration), Actor: "worker", Action: action, Target: s.id, Human: action, Cute: cute})
}

func (s *script) end(reason jobs.StopReason) *script {
	return s.publish(&jobs.End{Header: s.header(jobs.TypeEnd), StopReason: reason})
}

func (s *script) fail() *script {
	return s.publish(&jobs.ErrorEvent{Header: s.header(jobs.TypeError), Error: jobs.Error{Code: jobs.InferenceFailed, Message: "boom"}})
}

// sse is a message of an event stream: an event, or a comment.
type sse struct {
	ID      uint64
	Type    string
	Data    []byte
	Comment string
}

// sseReader reads an event stream as a browser's EventSource would.
type sseReader struct{ br *bufio.Reader }

func newSSEReader(r io.Reader) *sseReader { return &sseReader{br: bufio.NewReader(r)} }

// next returns the next event or comment; io.EOF when the stream closed.
func (r *sseReader) next() (sse, error) {
	var m sse
	var data [][]byte
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && m.Type == "" && len(data) == 0 {
				return m, io.EOF
			}
			return m, errors.Join(io.ErrUnexpectedEOF, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if m.Type == "" && len(data) == 0 && m.Comment == "" {
				continue
			}
			m.Data = bytes.Join(data, []byte("\n"))
			return m, nil
		case strings.HasPrefix(line, ":"):
			m.Comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			if m.ID, err = strconv.ParseUint(line[4:], 10, 64); err != nil {
				return m, err
			}
		case strings.HasPrefix(line, "event: "):
			m.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, []byte(line[6:]))
		}
	}
}

// all reads events (skipping comments) until the stream closes.
func (r *sseReader) all() ([]sse, error) {
	var got []sse
	for {
		m, err := r.next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, fmt.Errorf("reading the stream after %d events: %w", len(got), err)
		}
		if m.Comment == "" {
			got = append(got, m)
		}
	}
}

// events is all, for the test's goroutine.
func (r *sseReader) events(t testing.TB) []sse {
	t.Helper()
	got, err := r.all()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// openStream GETs a job's events and checks the answer is a stream.
func (h *harness) openStream(ctx context.Context, client *http.Client, path string, header ...string) (*http.Response, *sseReader) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("GET %s: %s %s: %s", path, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	return resp, newSSEReader(resp.Body)
}

// ids lists the events' ids and types, for readable failures.
func ids(evs []sse) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(strconv.FormatUint(e.ID, 10) + ":" + e.Type + " ")
	}
	return b.String()
}
