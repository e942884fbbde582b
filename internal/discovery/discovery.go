// Package discovery owns the llmworker NATS service (nats.go/micro): how a
// worker announces itself, what its status endpoint answers, and how
// others (the bridge, operators through `nats micro`) find the live
// workers and the models they serve.
//
// It knows nothing about llama.cpp, jobs or HTTP: a worker hands it its
// identity and a function that reports its status.
package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The service as NATS sees it.
const (
	// Service is the micro service every worker registers.
	Service = "llmworker"
	// StatusSubject is the status endpoint's subject. Every live worker
	// answers a request on it (no queue group): gather the replies.
	StatusSubject = "llmworker.status"
)

// Instance is what a worker tells about itself, as the service's metadata.
type Instance struct {
	WorkerID string
	// Model is the GGUF's general.name, else the file's stem.
	Model string
	// Pool is the worker's pool; empty is the default pool (jobs.execute).
	Pool        string
	Slots       int
	ContextSize int
	// Version is the worker binary's version.
	Version string
}

// Metadata keys of the service.
const (
	keyWorkerID = "worker_id"
	keyModel    = "model"
	keyPool     = "pool"
	keySlots    = "slots"
	keyCtxSize  = "ctx_size"
	keyVersion  = "version"
)

func (in Instance) metadata() map[string]string {
	return map[string]string{
		keyWorkerID: in.WorkerID,
		keyModel:    in.Model,
		keyPool:     in.Pool,
		keySlots:    strconv.Itoa(in.Slots),
		keyCtxSize:  strconv.Itoa(in.ContextSize),
		keyVersion:  in.Version,
	}
}

func instanceFrom(md map[string]string) Instance {
	slots, _ := strconv.Atoi(md[keySlots])
	ctxSize, _ := strconv.Atoi(md[keyCtxSize])
	return Instance{
		WorkerID: md[keyWorkerID], Model: md[keyModel], Pool: md[keyPool],
		Slots: slots, ContextSize: ctxSize, Version: md[keyVersion],
	}
}

// Status is what a worker's status endpoint answers.
type Status struct {
	WorkerID string `json:"worker_id"`
	Model    string `json:"model"`
	// Pool is empty for the default pool.
	Pool  string `json:"pool"`
	Slots int    `json:"slots"`
	// Busy counts the jobs running now, JobsRunning names them.
	Busy        int      `json:"busy"`
	JobsRunning []string `json:"jobs_running"`
	// Queued counts the jobs waiting in the worker's pool (all workers of
	// the pool share them); -1 when the queue could not be read.
	Queued int `json:"queued"`
}

// StatusFunc reports a worker's status; ctx bounds any lookup it makes.
type StatusFunc func(ctx context.Context) Status

// Register adds the worker's service on nc; Stop the returned service when
// the worker stops taking jobs, so that it disappears from discovery.
func Register(nc *nats.Conn, in Instance, status StatusFunc) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        Service,
		Version:     semver(in.Version),
		Description: "an llmworker worker: one model, jobs from its pool",
		Metadata:    in.metadata(),
	})
	if err != nil {
		return nil, fmt.Errorf("register service %s: %w", Service, err)
	}
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req.RespondJSON(status(ctx))
	}), micro.WithEndpointSubject(StatusSubject), micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		svc.Stop()
		return nil, fmt.Errorf("register service %s: %w", Service, err)
	}
	// Found as soon as Register returns: the server has the subscriptions.
	if err := nc.Flush(); err != nil {
		svc.Stop()
		return nil, fmt.Errorf("register service %s: %w", Service, err)
	}
	return svc, nil
}

var semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// semver is v as micro requires it (SemVer, no leading v); a build without
// a module version ("dev", "(devel)") is 0.0.0-dev.
func semver(v string) string {
	v = strings.TrimPrefix(v, "v")
	if semverPattern.MatchString(v) {
		return v
	}
	return "0.0.0-dev"
}

// Worker is one live worker as discovery sees it.
type Worker struct {
	Instance
	// ServiceID is the micro service's instance id (a NUID, new at each
	// start): the id `nats micro` shows and $SRV.*.llmworker.<id> takes.
	ServiceID string
}

// DefaultStall is how long a gather waits for one more reply after the
// last one: replies from live workers come within milliseconds of each
// other, so a pause this long means all have answered.
const DefaultStall = 300 * time.Millisecond

// DefaultTimeout bounds a gather whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Workers lists the live workers, sorted by worker id, from the replies to
// $SRV.INFO.llmworker. It returns when replies stop coming for
// DefaultStall or ctx ends; no worker is an empty list, not an error.
func Workers(ctx context.Context, nc *nats.Conn) ([]Worker, error) {
	subject, err := micro.ControlSubject(micro.InfoVerb, Service, "")
	if err != nil {
		return nil, err
	}
	var workers []Worker
	err = gather(ctx, nc, subject, func(data []byte) error {
		var info micro.Info
		if err := json.Unmarshal(data, &info); err != nil {
			return err
		}
		workers = append(workers, Worker{Instance: instanceFrom(info.Metadata), ServiceID: info.ID})
		return nil
	})
	slices.SortFunc(workers, func(a, b Worker) int {
		return cmp.Or(cmp.Compare(a.WorkerID, b.WorkerID), cmp.Compare(a.ServiceID, b.ServiceID))
	})
	return workers, err
}

// Statuses asks every live worker for its status, sorted by worker id;
// it returns as Workers does.
func Statuses(ctx context.Context, nc *nats.Conn) ([]Status, error) {
	var all []Status
	err := gather(ctx, nc, StatusSubject, func(data []byte) error {
		var s Status
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		all = append(all, s)
		return nil
	})
	slices.SortFunc(all, func(a, b Status) int { return cmp.Compare(a.WorkerID, b.WorkerID) })
	return all, err
}

// Models maps each model the live workers serve to the pools that serve
// it (the empty pool is the default one).
func Models(workers []Worker) map[string][]string {
	models := map[string][]string{}
	for _, w := range workers {
		if !slices.Contains(models[w.Model], w.Pool) {
			models[w.Model] = append(models[w.Model], w.Pool)
		}
	}
	for _, pools := range models {
		slices.Sort(pools)
	}
	return models
}

// gather publishes an empty request on subject and hands each reply to
// take until replies stall or ctx ends. A reply take refuses is skipped.
func gather(ctx context.Context, nc *nats.Conn, subject string, take func([]byte) error) error {
	inbox := nc.NewRespInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return fmt.Errorf("discover %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return fmt.Errorf("discover %s: %w", subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var stall <-chan time.Time // none before the first reply: wait for ctx
	for {
		select {
		case msg := <-replies:
			if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
				return nil // no responders: nobody is there
			}
			take(msg.Data)
			stall = time.After(DefaultStall)
		case <-stall:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
