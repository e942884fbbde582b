// Package deploy_test starts a real NATS server from
// deploy/nats/nats-server.conf and shows each of its four roles doing its
// whole job, and refused everything else.
package deploy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/discovery"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/testutil"
)

const confPath = "nats-server.conf"

var roles = []string{"orchestrator", "worker", "bridge", "observer"}

// deployment is the server of nats-server.conf, with each role's URL.
type deployment struct {
	srv  *server.Server
	urls map[string]string
}

// startConf runs the server from the shipped file, its passwords set in the
// environment, on a free loopback port with its store in a temporary
// directory and no monitoring port.
func startConf(t *testing.T) *deployment {
	t.Helper()
	d := &deployment{urls: map[string]string{}}
	passwords := map[string]string{}
	for _, role := range roles {
		passwords[role] = role + "-pw-" + fmt.Sprint(time.Now().UnixNano())
		t.Setenv("NATS_"+strings.ToUpper(role)+"_PASSWORD", passwords[role])
	}
	d.srv = testutil.StartNATSFile(t, confPath, func(o *server.Options) {
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", -1, 0
	})
	for _, role := range roles {
		d.urls[role] = fmt.Sprintf("nats://%s:%s@%s", role, passwords[role], d.srv.Addr())
	}
	return d
}

// client connects as role; errs receives the server's refusals.
func (d *deployment) client(t *testing.T, role string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := natsconn.Config{URL: d.urls[role]}.Connect(t.Name()+" "+role,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// refused waits for the server to refuse what (`Publish to "subject"` or
// `Subscription to "subject"`).
func refused(t *testing.T, errs <-chan error, what string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return
			}
		case <-timeout:
			t.Fatalf("the server did not refuse %s", what)
		}
	}
}

// The server does not start while a role's password is unset. (A password
// set to the empty string would let that user in with none: compose.yaml
// refuses to start with an unset or empty one.)
func TestConfNeedsEveryPassword(t *testing.T) {
	for _, missing := range roles {
		variable := "NATS_" + strings.ToUpper(missing) + "_PASSWORD"
		t.Run(missing, func(t *testing.T) {
			for _, role := range roles {
				t.Setenv("NATS_"+strings.ToUpper(role)+"_PASSWORD", "x")
			}
			os.Unsetenv(variable)
			if _, err := server.ProcessConfigFile(confPath); err == nil || !strings.Contains(err.Error(), variable) {
				t.Errorf("without $%s: %v", variable, err)
			}
		})
	}
}

// Each role does its whole job through the shipped configuration: the
// worker runs jobs, answers cancels and NATS micro; the bridge submits,
// streams, reads status, cancels and discovers workers; the orchestrator
// submits, follows and cancels; the observer watches.
func TestConfRolesDoTheirJobs(t *testing.T) {
	d := startConf(t)
	observer, _ := d.client(t, "observer")
	watched, err := observer.SubscribeSync(jobs.EventsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	lifecycle, err := observer.SubscribeSync(jobs.LifecycleSubject)
	if err != nil {
		t.Fatal(err)
	}
	observer.Flush()

	// The bridge first, so that it creates the streams; then the worker.
	bridgeNC, bridgeErrs := d.client(t, "bridge")
	bjs, _ := jetstream.New(bridgeNC)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bridge.CreateMissingStreams(ctx, bjs, 1); err != nil {
		t.Fatalf("bridge creates the streams: %v", err)
	}
	srv, err := bridge.New(bridge.Config{}, bridgeNC, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	testutil.StartWorkerWith(t, "", testutil.WorkerOptions{NATS: natsconn.Config{URL: d.urls["worker"]}, Parallel: 2})

	// worker.lifecycle reached the observer.
	if msg, err := lifecycle.NextMsg(10 * time.Second); err != nil || !strings.Contains(string(msg.Data), `"action"`) {
		t.Fatalf("observer: no lifecycle: %v", err)
	}

	t.Run("bridge", func(t *testing.T) {
		if r := httpDo(t, "GET", ts.URL+"/readyz", "", ""); !strings.HasPrefix(r, "200") {
			t.Errorf("readyz: %s", r)
		}
		stream := httpDo(t, "POST", ts.URL+"/v1/jobs", `{"job_id":"via-bridge","prompt":"Once upon a time","max_tokens":8}`, "text/event-stream")
		if !strings.Contains(stream, "event: end") {
			t.Fatalf("stream: %s", stream)
		}
		if r := httpDo(t, "GET", ts.URL+"/v1/jobs/via-bridge", "", ""); !strings.Contains(r, `"status":"done"`) {
			t.Errorf("status: %s", r)
		}
		// A job no worker takes (its pool has none) is queued, and
		// cancelled.
		if r := httpDo(t, "POST", ts.URL+"/v1/jobs", `{"job_id":"bridge-queued","pool":"nobody","prompt":"Once"}`, ""); !strings.HasPrefix(r, "202") {
			t.Fatalf("submit: %s", r)
		}
		if r := httpDo(t, "GET", ts.URL+"/v1/jobs/bridge-queued", "", ""); !strings.Contains(r, `"status":"queued"`) {
			t.Errorf("status: %s", r)
		}
		if r := httpDo(t, "DELETE", ts.URL+"/v1/jobs/bridge-queued", "", ""); !strings.HasPrefix(r, "202") {
			t.Errorf("cancel: %s", r)
		}
		if r := httpDo(t, "GET", ts.URL+"/v1/jobs/bridge-queued/events", "", ""); !strings.Contains(r, `"stop_reason":"CANCELLED"`) {
			t.Errorf("cancelled job's events: %s", r)
		}
		// The OpenAI routes: models from discovery, a chat completion.
		if r := httpDo(t, "GET", ts.URL+"/v1/models", "", ""); !strings.Contains(r, "stories260K") {
			t.Errorf("/v1/models: %s", r)
		}
		if r := httpDo(t, "POST", ts.URL+"/v1/chat/completions", `{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}`, ""); !strings.HasPrefix(r, "200") || !strings.Contains(r, `"finish_reason"`) {
			t.Errorf("chat completion: %s", r)
		}
		workers, err := discovery.Workers(ctx, bridgeNC)
		if err != nil || len(workers) != 1 {
			t.Errorf("discovery: %v, %v", workers, err)
		}
		statuses, err := discovery.Statuses(ctx, bridgeNC)
		if err != nil || len(statuses) != 1 {
			t.Errorf("worker status: %v, %v", statuses, err)
		}
		select {
		case err := <-bridgeErrs:
			t.Errorf("the bridge was refused something of its job: %v", err)
		default:
		}
	})

	t.Run("orchestrator", func(t *testing.T) {
		nc, errs := d.client(t, "orchestrator")
		live, err := nc.SubscribeSync(jobs.EventsSubject("via-orchestrator"))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		testutil.Submit(t, js, jobs.ExecuteSubject, map[string]any{"job_id": "via-orchestrator", "prompt": "Once upon a time", "max_tokens": 8})
		events := testutil.Events(t, js, "via-orchestrator", 30*time.Second)
		if _, ok := events[len(events)-1].(*jobs.End); !ok {
			t.Fatalf("ended with %+v", events[len(events)-1])
		}
		if _, err := live.NextMsg(10 * time.Second); err != nil {
			t.Errorf("a plain subscription of the job's subject: %v", err)
		}
		testutil.Submit(t, js, jobs.ExecuteSubjectFor("nobody"), map[string]any{"job_id": "orchestrator-queued", "prompt": "Once"})
		if _, err := js.Publish(ctx, jobs.CancelSubject("orchestrator-queued"), []byte(`{"job_id":"orchestrator-queued"}`)); err != nil {
			t.Fatal(err)
		}
		events = testutil.Events(t, js, "orchestrator-queued", 30*time.Second)
		if end, ok := events[len(events)-1].(*jobs.End); !ok || end.StopReason != jobs.StopCancelled {
			t.Errorf("cancelled job ended with %+v", events[len(events)-1])
		}
		select {
		case err := <-errs:
			t.Errorf("the orchestrator was refused something of its job: %v", err)
		default:
		}
	})

	t.Run("observer", func(t *testing.T) {
		msg, err := watched.NextMsg(10 * time.Second)
		if err != nil || !strings.HasPrefix(msg.Subject, jobs.EventsPrefix) {
			t.Errorf("observer: %v", err)
		}
	})
}

// Each role is refused what is not its job, and nothing it tried got in.
func TestConfDeniesTheRest(t *testing.T) {
	d := startConf(t)
	admin, _ := d.client(t, "bridge")
	js, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bridge.CreateMissingStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	denied := map[string]struct{ publish, subscribe []string }{
		"worker": {
			publish:   []string{jobs.ExecuteSubject, jobs.ExecuteSubjectFor("gpu"), jobs.CancelSubject("x"), "$JS.API.STREAM.DELETE.JOB_EVENTS", "$JS.API.STREAM.PURGE.JOBS"},
			subscribe: []string{jobs.ExecuteSubject, jobs.EventsPrefix + ">"},
		},
		"bridge": {
			publish:   []string{jobs.EventsSubject("forged"), jobs.LifecycleSubject, "$JS.API.STREAM.DELETE.JOB_EVENTS", "$JS.API.STREAM.PURGE.JOB_EVENTS"},
			subscribe: []string{jobs.EventsPrefix + ">", jobs.ExecuteSubject},
		},
		"orchestrator": {
			publish:   []string{jobs.EventsSubject("forged"), jobs.LifecycleSubject, "$JS.API.STREAM.DELETE.JOBS", "$JS.API.CONSUMER.MSG.NEXT.JOBS.workers"},
			subscribe: []string{jobs.ExecuteSubject, jobs.LifecycleSubject},
		},
		"observer": {
			publish:   []string{jobs.ExecuteSubject, jobs.CancelSubject("x"), jobs.EventsSubject("forged"), "$JS.API.INFO"},
			subscribe: []string{jobs.ExecuteSubject, jobs.CancelPrefix + ">", "_INBOX.>"},
		},
	}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			nc, errs := d.client(t, role)
			for _, subject := range denied[role].publish {
				nc.Publish(subject, []byte(`{"type":"end","job_id":"forged","seq":1}`))
				refused(t, errs, fmt.Sprintf("Publish to %q", subject))
			}
			for _, subject := range denied[role].subscribe {
				if _, err := nc.SubscribeSync(subject); err != nil {
					t.Fatal(err)
				}
				refused(t, errs, fmt.Sprintf("Subscription to %q", subject))
			}
		})
	}
	// Nothing forged reached a stream, and every stream is still there.
	events, err := js.Stream(ctx, jobs.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.GetLastMsgForSubject(ctx, jobs.EventsSubject("forged")); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a forged event: %v", err)
	}
	for _, name := range []string{jobs.QueueStream, jobs.CancelStream} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if info, _ := st.Info(ctx); info.State.Msgs != 0 {
			t.Errorf("%s holds %d messages, want none", name, info.State.Msgs)
		}
	}
	// A role's user with another role's password, or none, is refused.
	for _, url := range []string{
		strings.Replace(d.urls["worker"], "worker:", "bridge:", 1),
		"nats://" + d.srv.Addr().String(),
	} {
		if _, err := (natsconn.Config{URL: url}).Connect("intruder"); err == nil || !strings.Contains(err.Error(), "authorization violation") {
			t.Errorf("%s: %v", natsconn.Redact(url), err)
		}
	}
}

// httpDo sends a request and returns "status\nbody" (the whole SSE stream
// for an event-stream request).
func httpDo(t *testing.T, method, url, body, accept string) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	client := &http.Client{Timeout: time.Minute} // a refused worker would leave a stream waiting
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	b.WriteString(resp.Status + "\n")
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		data, _ := io.ReadAll(resp.Body)
		return b.String() + string(data)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		b.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "data: ") && (strings.Contains(lines.Text(), `"type":"end"`) || strings.Contains(lines.Text(), `"type":"error"`)) {
			break
		}
	}
	return b.String()
}
