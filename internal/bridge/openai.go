package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/openai"
)

// The OpenAI-compatible routes: the same jobs, asked for and answered as
// the OpenAI API does, so its clients work unchanged. Each response
// carries the job's id (X-Job-Id), whose events, narration included, stay
// at /v1/jobs/{id}/events.
func (s *Server) routeOpenAI() {
	s.mux.HandleFunc("POST /v1/chat/completions", s.openAIHandler(chatCompletion))
	s.mux.HandleFunc("POST /v1/completions", s.openAIHandler(textCompletion))
	s.mux.HandleFunc("GET /v1/models", s.listModels)
	s.mux.HandleFunc("GET /v1/models/{model...}", s.getModel)
}

// openAIClientHeaders are the headers the OpenAI routes read and those the
// official JavaScript client sends, which a browser's CORS preflight asks
// to allow.
const openAIClientHeaders = "X-Correlation-Id, X-Narration, X-Stainless-Arch, X-Stainless-Lang, X-Stainless-OS, " +
	"X-Stainless-Package-Version, X-Stainless-Retry-Count, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Timeout"

// isOpenAIPath reports whether a path is one of the OpenAI routes, whose
// errors take OpenAI's shape.
func isOpenAIPath(path string) bool {
	return path == "/v1/completions" || strings.HasPrefix(path, "/v1/chat/") || path == "/v1/models" || strings.HasPrefix(path, "/v1/models/")
}

// writeOpenAIError answers an error in OpenAI's shape. Errors that rerunning
// would not mend say so to the clients' retry logic.
func writeOpenAIError(w http.ResponseWriter, e *openai.Error) {
	if e.Status == http.StatusConflict || e.Status == http.StatusGatewayTimeout || e.Status >= 500 && e.Status != http.StatusServiceUnavailable {
		w.Header().Set("X-Should-Retry", "false")
	}
	writeJSON(w, e.Status, openai.ErrorBody{Error: e})
}

// openAIHandler reads a request's body, maps it with decode and runs it.
func (s *Server) openAIHandler(decode func([]byte) (*completion, *openai.Error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			writeOpenAIError(w, openai.NewError(http.StatusRequestEntityTooLarge, openai.TypeInvalidRequest, "request_too_large", "",
				fmt.Sprintf("request body exceeds %d bytes", tooLarge.Limit)))
			return
		case err != nil:
			writeOpenAIError(w, openai.BadParam("", "reading the body: "+err.Error()))
			return
		}
		c, oerr := decode(body)
		if oerr != nil {
			writeOpenAIError(w, oerr)
			return
		}
		c.req.CorrelationID = r.Header.Get(jobs.CorrelationHeader)
		c.narrate = r.Header.Get("X-Narration") == "true"
		if err := c.req.Validate(); err != nil {
			writeOpenAIError(w, fromJobError(err, c.chat))
			return
		}
		pool, oerr := s.poolFor(r.Context(), c.model)
		if oerr != nil {
			writeOpenAIError(w, oerr)
			return
		}
		s.complete(w, r, c, pool)
	}
}

// complete publishes the job, follows its events and answers with its
// completion, streamed or whole. A client that goes away cancels the job.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, c *completion, pool string) {
	ctx := r.Context()
	id := c.req.JobID
	data, err := json.Marshal(c.req)
	if err != nil {
		writeOpenAIError(w, openai.NewError(http.StatusInternalServerError, openai.TypeServer, "", "", err.Error()))
		return
	}
	// Follow first: the job is new, so every event of it comes live.
	live, err := s.hub.watch(ctx, id)
	if err != nil {
		writeOpenAIError(w, openai.NewError(http.StatusServiceUnavailable, openai.TypeServer, "unavailable", "", "the job's events cannot be read: "+err.Error()))
		return
	}
	defer s.hub.unwatch(id, live)
	_, err = s.publishJob(ctx, jobs.ExecuteSubjectFor(pool), id, data)
	if jobs.IsQueueFull(err) {
		// The clients wait Retry-After and try again, as for OpenAI's limits.
		w.Header().Set("Retry-After", strconv.Itoa(int(queueFullRetry.Seconds())))
		writeOpenAIError(w, openai.NewError(http.StatusTooManyRequests, openai.TypeRateLimit, "queue_full", "",
			"the queue of the pool serving "+c.model+" is full (the workers' -max-queued); try again later"))
		return
	}
	if err != nil {
		s.log.Error().Err(err).Str("job_id", id).Msg("publish job")
		writeOpenAIError(w, openai.NewError(http.StatusServiceUnavailable, openai.TypeServer, "unavailable", "", "the job could not be queued: "+err.Error()))
		return
	}
	s.log.Info().Str("job_id", id).Str("correlation_id", c.req.CorrelationID).Str("pool", pool).Str("model", c.model).Msg("openai job queued")
	w.Header().Set("X-Job-Id", id)
	w.Header().Set("X-Request-Id", id)

	var a answer = &wholeAnswer{c: c, w: w}
	if c.stream {
		a = &streamAnswer{c: c, w: w, out: &sseStream{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}}
		a = &firstTokenTimer{answer: a, observe: func() { s.met.firstToken.Observe(time.Since(arrival(ctx)).Seconds()) }}
		s.met.streams.Inc()
		defer s.met.streams.Dec()
	}
	if !s.answer(ctx, live, a) && ctx.Err() != nil {
		s.clientGone(id, streamOptions{cancelOnGone: true})
	}
}

// answer feeds the job's events to a until the terminal one, and reports
// whether it came.
func (s *Server) answer(ctx context.Context, live *watcher, a answer) bool {
	t := &transcript{}
	for {
		batch, behind := live.take()
		for _, d := range batch {
			done, err := t.feed(d, a)
			if err != nil || done {
				return done
			}
		}
		if behind {
			a.fail(openai.NewError(http.StatusServiceUnavailable, openai.TypeServer, "unavailable",
				"", fmt.Sprintf("the bridge fell more than %d events behind the job; its events stay at /v1/jobs/{id}/events", maxQueued)))
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-live.wake:
		}
	}
}

// transcript reads a job's events in order, for an answer.
type transcript struct {
	started bool
	// sent counts the job's token events given to the answer; a job
	// handed to another worker starts its tokens again from 0.
	sent int
}

// feed hands one event to the answer and says whether it was the last.
func (t *transcript) feed(d delivery, a answer) (bool, error) {
	ev, err := jobs.DecodeEvent(d.data)
	if err != nil {
		return false, nil // not an event of the contract: skip it
	}
	switch ev := ev.(type) {
	case *jobs.Started:
		if !t.started {
			t.started = true
			return false, a.start()
		}
	case *jobs.Token:
		if ev.I < t.sent {
			return false, nil // said already, before the job moved to another worker
		}
		t.sent = ev.I + 1
		return false, a.token(ev.T)
	case *jobs.Narration:
		return false, a.narration(d.data)
	case *jobs.End:
		if oerr := endError(ev); oerr != nil {
			a.fail(oerr)
		} else {
			a.finish(ev)
		}
		return true, nil
	case *jobs.ErrorEvent:
		a.fail(fromJobError(&ev.Error, a.chat()))
		return true, nil
	}
	return false, nil
}

// endError is the error a job's end means to an OpenAI client: a job
// cancelled or timed out gives no completion.
func endError(ev *jobs.End) *openai.Error {
	switch ev.StopReason {
	case jobs.StopCancelled:
		return openai.NewError(http.StatusConflict, openai.TypeInvalidRequest, "cancelled", "", "the job was cancelled")
	case jobs.StopTimeout:
		return openai.NewError(http.StatusGatewayTimeout, openai.TypeTimeout, "timeout", "", "the job ran past its timeout")
	}
	return nil
}

// finishReason is OpenAI's name for why the generation ended.
func finishReason(ev *jobs.End) string {
	if ev.StopReason == jobs.StopMaxTokens {
		return openai.FinishLength
	}
	return openai.FinishStop
}

func usage(ev *jobs.End) *openai.Usage {
	return &openai.Usage{PromptTokens: ev.TokensIn, CompletionTokens: ev.TokensOut, TotalTokens: ev.TokensIn + ev.TokensOut}
}
