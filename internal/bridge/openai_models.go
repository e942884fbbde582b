package bridge

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/discovery"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/openai"
)

// How fresh the catalog of models must be: the model list is at most
// listAge old (a worker that stops drops out within it); a request's model
// is looked up in a view up to routeAge old, refreshed in the background
// after refreshAge, and gathered anew when the model is missing (a worker
// that just started).
const (
	listAge    = time.Second
	routeAge   = 10 * time.Second
	refreshAge = time.Second
)

// catalog is the bridge's view of the models the live workers serve,
// gathered from their NATS micro service (internal/discovery). It is soft
// state: any bridge gathers the same.
type catalog struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu     sync.Mutex
	models map[string][]string // model → the pools that serve it
	at     time.Time           // when models was gathered
	seen   map[string]seen
	// gathering is closed when the gather under way ends; nil when none.
	gathering chan struct{}
	gathers   sync.WaitGroup
}

// seen is when the bridge first and last saw a model served.
type seen struct{ first, last time.Time }

// newCatalog starts a catalog on nc. A worker's lifecycle news (ready,
// shutdown) makes the catalog gather anew at its next view, so a worker
// that stops drops out at once; one that dies, within listAge.
func newCatalog(nc *nats.Conn) (*catalog, error) {
	c := &catalog{nc: nc, seen: map[string]seen{}}
	var err error
	c.sub, err = nc.Subscribe(jobs.LifecycleSubject, func(*nats.Msg) {
		c.mu.Lock()
		c.at = time.Time{}
		c.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", jobs.LifecycleSubject, err)
	}
	return c, nil
}

// view returns the models at most maxAge old, gathering them when they
// are older, and in the background when they are older than refreshAge.
func (c *catalog) view(ctx context.Context, maxAge time.Duration) map[string][]string {
	c.mu.Lock()
	models, age := c.models, time.Since(c.at)
	c.mu.Unlock()
	switch {
	case models == nil || age >= maxAge:
		select {
		case <-c.gather():
		case <-ctx.Done():
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.models
	case age > refreshAge:
		c.gather()
	}
	return models
}

// gather starts a gather unless one is under way; the channel is closed
// when it ends.
func (c *catalog) gather() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gathering != nil {
		return c.gathering
	}
	done := make(chan struct{})
	c.gathering = done
	c.gathers.Add(1)
	go func() {
		defer c.gathers.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		workers, err := discovery.Workers(ctx, c.nc)
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.gathering = nil
		if err != nil {
			return
		}
		now := time.Now()
		c.models, c.at = discovery.Models(workers), now
		for m := range c.models {
			s := c.seen[m]
			if s.first.IsZero() {
				s.first = now
			}
			s.last = now
			c.seen[m] = s
		}
	}()
	return done
}

// close stops following the workers' lifecycle and waits for the gather
// under way.
func (c *catalog) close() {
	c.sub.Unsubscribe()
	c.gathers.Wait()
}

func (c *catalog) lastSeen(model string) (seen, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.seen[model]
	return s, ok
}

// poolFor finds the pool whose workers serve model (the default pool
// first when several do): 404 for a model no worker has served, 503 for
// one none serves now.
func (s *Server) poolFor(ctx context.Context, model string) (string, *openai.Error) {
	models := s.catalog.view(ctx, routeAge)
	if _, ok := models[model]; !ok {
		models = s.catalog.view(ctx, 0)
	}
	if pools, ok := models[model]; ok {
		return pools[0], nil
	}
	if _, ok := s.catalog.lastSeen(model); ok || len(models) == 0 {
		return "", openai.NewError(http.StatusServiceUnavailable, openai.TypeServer, "model_not_available", "model",
			"no live worker serves the model "+model+" now")
	}
	return "", modelNotFound(model)
}

func modelNotFound(model string) *openai.Error {
	return openai.NewError(http.StatusNotFound, openai.TypeInvalidRequest, "model_not_found", "model",
		"the model "+model+" does not exist: GET /v1/models lists the models that live workers serve")
}

// listModels serves GET /v1/models: the models that live workers serve.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	models := s.catalog.view(r.Context(), listAge)
	list := openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{}}
	for m := range models {
		list.Data = append(list.Data, s.model(m))
	}
	slices.SortFunc(list.Data, func(a, b openai.Model) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, list)
}

// getModel serves GET /v1/models/{model}.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("model")
	if _, ok := s.catalog.view(r.Context(), listAge)[id]; !ok {
		writeOpenAIError(w, modelNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, s.model(id))
}

// model describes a served model; created is when this bridge first saw
// it served.
func (s *Server) model(id string) openai.Model {
	seen, _ := s.catalog.lastSeen(id)
	return openai.Model{ID: id, Object: openai.ObjectModel, Created: seen.first.Unix(), OwnedBy: "llmworker"}
}
