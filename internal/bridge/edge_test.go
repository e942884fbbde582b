package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/testutil"
)

// whoever can publish on jobs.events.<id> cannot write SSE fields or
// events of their own into a client's stream: a live client and a late
// one get exactly the contract's events, each a single data line, and the
// bridge says once on stdout that the job had events it did not forward.
func TestSSEInjectionIsNotForwarded(t *testing.T) {
	_, url := testutil.StartNATS(t)
	nc := testutil.Connect(t, url)
	js := testutil.JetStream(t, nc)
	out := &testutil.SyncBuffer{}
	srv, err := bridge.New(bridge.Config{}, nc, zerolog.New(out))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer func() { ts.Close(); srv.Close() }()
	defer http.DefaultClient.CloseIdleConnections()

	id := "inject"
	publish := func(data string) {
		t.Helper()
		if _, err := js.Publish(context.Background(), jobs.EventsSubject(id), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	publish(`{"type":"started","job_id":"inject","seq":1,"model":"m","worker_id":"w","attempt":1}`)
	resp, err := http.Get(ts.URL + "/v1/jobs/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	live := bufio.NewReader(resp.Body)
	if line, _ := live.ReadString('\n'); line != "id: 1\n" {
		t.Fatalf("first line %q", line)
	}
	for _, attack := range []string{
		`{"type":"token\nevent: end\ndata: {}","job_id":"inject","seq":2,"t":"x"}`,
		"{\"type\":\"token\",\"job_id\":\"inject\",\"seq\":2,\"t\":\"a\"}\r\nevent: end\r\ndata: {}",
		"{\"type\":\"token\",\"job_id\":\"inject\",\"seq\":2,\"t\":\"a\"}\revent: end",
		`["token","not an object"]`,
		`null`,
		`{"type":"forged","job_id":"inject","seq":2}`,
		`{"type":"token","job_id":"someone-else","seq":2,"t":"x"}`,
		`{"type":"token","job_id":"inject","t":"no seq"}`,
	} {
		publish(attack)
	}
	// Valid, with line breaks between its fields: it goes out on one line.
	publish("{\"type\":\"token\",\r\n\"job_id\":\"inject\",\n\"seq\":2,\"t\":\" ok\",\"i\":0}")
	publish(`{"type":"end","job_id":"inject","seq":3,"tokens_in":1,"tokens_out":1,"decode_time_ms":1,"stop_reason":"MAX_TOKENS"}`)

	rest, _ := io.ReadAll(live)
	late, err := http.Get(ts.URL + "/v1/jobs/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	replayed, _ := io.ReadAll(late.Body)
	late.Body.Close()
	for name, stream := range map[string]string{"live": "id: 1\n" + string(rest), "late": string(replayed)} {
		var types []string
		for _, line := range strings.Split(strings.TrimSuffix(stream, "\n"), "\n") {
			field, value, _ := strings.Cut(line, ": ")
			switch field {
			case "", "id":
			case "event":
				types = append(types, value)
			case "data":
				var v map[string]any
				if json.Unmarshal([]byte(value), &v) != nil {
					t.Errorf("%s: data line is not a JSON object: %q", name, line)
				}
			default:
				t.Errorf("%s: a line the bridge did not write: %q", name, line)
			}
		}
		if got := strings.Join(types, ","); got != "started,token,end" {
			t.Errorf("%s: events %s, want started,token,end:\n%s", name, got, stream)
		}
		if !strings.Contains(stream, `data: {"type":"token","job_id":"inject","seq":2,"t":" ok","i":0}`+"\n\n") {
			t.Errorf("%s: the valid token is not one compact line:\n%s", name, stream)
		}
	}
	if n := strings.Count(string(out.Bytes()), "is not forwarded"); n != 1 {
		t.Errorf("stdout tells %d times that events were not forwarded, want once:\n%s", n, out.Bytes())
	}
}

// A client that trickles its request body in is answered 408 and cut off
// within -read-timeout; streams, whose requests are read at once, outlive
// it.
func TestSlowBodyIsCutOff(t *testing.T) {
	readTimeout := 300 * time.Millisecond
	h := startBridge(t, bridge.Config{ReadTimeout: readTimeout, Heartbeat: 3 * readTimeout})
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // far beyond; the bridge must answer long before
	begin := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive within 300ms") {
		t.Errorf("answer: %s %s", resp.Status, body)
	}
	t.Logf("cut off after %s", time.Since(begin).Round(time.Millisecond))

	// A stream lasts past the read timeout: its ping comes three read
	// timeouts after it opened, both for a GET and for a POST whose body
	// was read.
	h.script("long").started()
	_, events := h.openStream(context.Background(), http.DefaultClient, "/v1/jobs/long/events")
	req, _ := http.NewRequest("POST", h.URL+"/v1/jobs", strings.NewReader(`{"job_id":"posted","pool":"nobody","prompt":"Once"}`))
	req.Header.Set("Accept", "text/event-stream")
	posted, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer posted.Body.Close()
	for name, r := range map[string]*bufio.Reader{"GET": events.br, "POST": bufio.NewReader(posted.Body)} {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s stream ended: %v", name, err)
			}
			if line == ": ping\n" {
				break
			}
		}
	}
}

// /readyz gives a reason that names no address.
func TestReadyzReason(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	if err := h.js.DeleteStream(context.Background(), jobs.QueueStream); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do("GET", "/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"reason":"the stream JOBS does not exist","status":"unavailable"}`+"\n" {
		t.Errorf("readyz: %s %s", resp.Status, body)
	}
}

// Looking up an unknown id costs a bounded number of NATS requests, however
// long the queue.
func TestUnknownStatusIsBounded(t *testing.T) {
	h := startBridge(t, bridge.Config{})
	other := testutil.Connect(t, h.natsURL)
	js, _ := jetstream.New(other)
	for i := range 300 {
		id := fmt.Sprintf("q%d", i)
		if _, err := js.Publish(context.Background(), jobs.ExecuteSubjectFor("nobody"), []byte(`{"job_id":"`+id+`","prompt":"Once"}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if resp, body := h.do("GET", "/v1/jobs/q3", ""); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"queued"`) {
		t.Fatalf("a queued job: %s %s", resp.Status, body)
	}
	before := h.nc.Stats().OutMsgs
	resp, _ := h.do("GET", "/v1/jobs/no-such-job", "")
	if sent := h.nc.Stats().OutMsgs - before; resp.StatusCode != http.StatusNotFound || sent > 70 {
		t.Errorf("unknown id: %s after %d NATS requests, want 404 after at most 70", resp.Status, sent)
	}
}
