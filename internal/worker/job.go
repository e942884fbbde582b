package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"

	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
)

// job is one execute request on its way through this worker.
type job struct {
	w         *Worker
	msg       jetstream.Msg
	req       jobs.Request
	narration narration.Job
	pub       *publisher
	stored    history // what the events stream held of the job when it was read
	seed      uint32
	// grammar constrains the output (from the request's json_schema).
	grammar string
	begin   time.Time // when the worker took the job
	// narrator and log tell the job's lines on stdout, with its trace_id
	// when it has one; header carries its trace context on its events.
	narrator *narration.Narrator
	log      zerolog.Logger
	header   nats.Header
	spans    spans
}

// handle runs one job message to its end and settles it with the queue:
// acked when its events are stored (whatever the outcome), handed back when
// the worker shuts down under it or its events could not be stored.
func (w *Worker) handle(jobsCtx context.Context, msg jetstream.Msg) {
	req, decodeErr := jobs.DecodeRequest(msg.Data())
	j := &job{w: w, msg: msg, req: req, narration: narration.Job{ID: req.JobID, CorrelationID: correlationID(req, msg)}, begin: time.Now()}
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered == 1 {
		w.cfg.Metrics.taken(meta.Timestamp, j.begin)
	}
	jobsCtx = j.startTrace(jobsCtx)
	defer j.spans.job.End()
	if decodeErr != nil {
		j.reject(decodeErr)
		return
	}
	ctx, cancel := context.WithCancelCause(jobsCtx)
	defer cancel(nil)
	// A cancel is told on the job's own log line, with its trace.
	cancelRequested := func(cause error) { j.log.Info().Msg("cancel requested"); cancel(cause) }
	if !w.register(req.JobID, cancelRequested) {
		// A redelivery is the same stream message: acking or handing back
		// the copy would settle the running job itself, which settles it
		// when it ends.
		j.log.Warn().Msg("job delivered again while it runs here; leaving the copy to the running job")
		return
	}
	defer w.unregister(req.JobID)
	if j.exhausted(ctx) {
		return
	}

	text, grammar, err := w.input(req)
	var prompt engine.Prompt
	if err == nil {
		prompt, err = w.engine.Tokenize(text)
		if err == nil {
			err = req.CheckContext(prompt.Len(), w.engine.Info().ContextSize)
		} else {
			err = &jobs.Error{Code: jobs.InvalidRequest, Field: "prompt", Message: err.Error()}
		}
	}
	j.grammar = grammar
	if err != nil {
		j.reject(err)
		return
	}
	if err := j.run(ctx, cancel, prompt); !errors.Is(err, errSettled) {
		j.settle(err)
	}
}

// correlationID is the request's, else the header's, else a new UUID.
func correlationID(req jobs.Request, msg jetstream.Msg) string {
	if req.CorrelationID != "" {
		return req.CorrelationID
	}
	if h := msg.Headers().Get(jobs.CorrelationHeader); h != "" && len(h) <= jobs.MaxCorrelationLen {
		return h
	}
	return uuid.NewString()
}

// reject answers a malformed request: a validation_failed line on stdout
// always, and on the job's subject with an error event when its job_id is
// usable. The message is acked so it is not delivered again.
func (j *job) reject(err error) {
	var jerr *jobs.Error
	if !errors.As(err, &jerr) {
		jerr = &jobs.Error{Code: jobs.InvalidRequest, Message: err.Error()}
	}
	j.w.cfg.Metrics.settled(string(jerr.Code), 0, 0, 0)
	if !jobs.ValidSubjectToken(j.narration.ID) {
		// Perhaps the id is there but something after it broke the decoding.
		j.narration.ID = jobs.ProbeJobID(j.msg.Data())
	}
	if j.narration.ID == "" {
		j.narrator.Tell(j.narration.ValidationFailed(jerr))
		j.msg.Ack()
		return
	}
	ctx := context.Background()
	if j.stored, err = lastEvent(ctx, j.w.events, j.narration.ID); err != nil || j.stored.terminal {
		// Unreadable history, or a job of that id already ended: say it
		// on stdout only, never write into another job's finished events.
		j.narrator.Tell(j.narration.ValidationFailed(jerr))
		j.msg.Ack()
		return
	}
	j.pub = newPublisher(j.w.js, j.w.events, j.narration.ID, j.stored).withHeader(j.header)
	j.narrator.Tell(j.narration.ValidationFailed(jerr), j.pub)
	j.pub.publish(ctx, &jobs.ErrorEvent{Header: jobs.Header{Type: jobs.TypeError}, Error: *jerr})
	j.settle(nil)
}

// open opens the job's events with started. It returns false, having
// settled the message, when the job must not run: it already ended (a
// duplicate, or cancelled by another worker while queued), a cancel for it
// waits in the cancel stream, or the stream is unreadable.
//
// A job delivered for the first time most likely has no events: started is
// published on that bet (the stream refuses it if the subject is not
// empty), and the history is read only when the bet fails or the job comes
// again. The cancel stream is read meanwhile. Both stand between the job
// and its first token.
func (j *job) open(ctx context.Context) bool {
	cancelRead := make(chan bool, 1)
	go func() { cancelRead <- j.w.cancelWaiting(ctx, j.req.JobID) }()
	cancelled := sync.OnceValue(func() bool { return <-cancelRead })
	defer cancelled() // the read ends before open does

	fresh := j.attempt() == 1
	for range 10 {
		if !fresh {
			var err error
			if j.stored, err = lastEvent(ctx, j.w.events, j.req.JobID); err != nil {
				j.settle(err)
				return false
			}
			if j.stored.terminal {
				j.log.Info().Msg("job already ended (a duplicate, or cancelled while queued); dropping it")
				j.w.cfg.Metrics.settled("dropped", 0, 0, 0)
				j.msg.Ack()
				return false
			}
		}
		fresh = false
		j.pub = newPublisher(j.w.js, j.w.events, j.req.JobID, j.stored).withHeader(j.header)
		err := j.pub.publish(ctx, j.started())
		if errors.Is(err, errRaced) {
			continue // the subject is not as we thought: read it
		}
		if err != nil {
			j.settle(err)
			return false
		}
		if cancelled() {
			// Cancelled while no worker was there to hear it.
			j.w.cfg.Metrics.settled(string(jobs.StopCancelled), 0, 0, 0)
			j.pub.publish(ctx, end(engine.Result{}, jobs.StopCancelled))
			j.settle(nil)
			return false
		}
		return true
	}
	j.settle(errors.New("the job's events keep changing under it"))
	return false
}

// attempt counts the deliveries of the job's message, this one included.
func (j *job) attempt() int {
	if meta, err := j.msg.Metadata(); err == nil {
		return int(meta.NumDelivered)
	}
	return 1
}

func (j *job) started() *jobs.Started {
	info := j.w.engine.Info()
	return &jobs.Started{
		Header:   jobs.Header{Type: jobs.TypeStarted},
		Model:    info.Name,
		WorkerID: j.w.cfg.WorkerID, CorrelationID: j.narration.CorrelationID,
		Seed: j.seed, Attempt: j.attempt(),
	}
}

// end is a job's end event.
func end(res engine.Result, reason jobs.StopReason) *jobs.End {
	e := &jobs.End{
		Header:       jobs.Header{Type: jobs.TypeEnd},
		TokensIn:     res.PromptTokens,
		TokensOut:    res.Pieces,
		DecodeTimeMS: res.Time.Milliseconds(),
		StopReason:   reason,
	}
	if reason == jobs.StopSequence {
		e.StopSequenceMatched = &res.StopSequence
	}
	return e
}

// errStore ends a job whose events could not be stored.
var errStore = errors.New("events could not be stored")

// errSettled says the job's message is acked or handed back already.
var errSettled = errors.New("settled")

// run generates, telling the job's subject every token and narration event,
// and ends its events with end or error. It returns errShutdown when the
// job must go back to the queue.
//
// The engine starts at once, while open reads the job's history and
// publishes started: the first hook waits for open, so nothing is told
// before started, and the engine's buffered updates mean that waiting never
// holds up the decode loop. If open says the job must not run, generation
// is cancelled and its output dropped.
func (j *job) run(ctx context.Context, cancel context.CancelCauseFunc, prompt engine.Prompt) error {
	p := j.req.Params()
	j.seed = rand.Uint32()
	if p.Seed != nil {
		j.seed = *p.Seed
	}
	opened := make(chan bool, 1)
	// A cancel that comes while open works is the generation's to answer:
	// open itself finishes its reads and writes.
	go func() { opened <- j.open(context.WithoutCancel(ctx)) }()
	proceed := j.whenOpen(opened, cancel, prompt.Len(), p.MaxTokens)

	genCtx, stop := context.WithTimeoutCause(ctx, p.Timeout, errTimeout)
	defer stop()
	go j.keepAlive(genCtx)
	res, err := j.generate(genCtx, ctx, cancel, prompt, p, proceed)
	j.traceGeneration(ctx, res)
	if !proceed() {
		return errSettled
	}
	return j.finish(ctx, res, err, context.Cause(genCtx))
}

// whenOpen returns the gate every hook passes: its first call waits for
// open's answer, then narrates the job's start, or cancels the generation
// of a job that must not run. It reports whether the job runs.
func (j *job) whenOpen(opened <-chan bool, cancel context.CancelCauseFunc, promptTokens, maxTokens int) func() bool {
	waited, ok := false, false
	return func() bool {
		if !waited {
			waited, ok = true, <-opened
			if !ok {
				cancel(errSettled)
				return false
			}
			j.narrate(j.narration.Validated())
			j.narrate(j.narration.InferenceStart(j.w.engine.Info().Name, maxTokens))
			j.narrate(j.narration.Tokenized(promptTokens))
		}
		return ok
	}
}

// generate runs the engine on the job, publishing each token and
// narrating cache resets and progress, once proceed lets it. A token that
// cannot be stored cancels the job with errStore.
func (j *job) generate(genCtx, ctx context.Context, cancel context.CancelCauseFunc, prompt engine.Prompt, p jobs.Params, proceed func() bool) (engine.Result, error) {
	var last time.Time // when the last token was published
	return j.w.engine.Generate(genCtx, engine.Request{
		Prompt:    prompt,
		MaxTokens: p.MaxTokens,
		Stop:      p.Stop,
		Grammar:   j.grammar,
		Sampling: engine.Sampling{
			Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, MinP: p.MinP,
			RepetitionPenalty: p.RepetitionPenalty, Seed: j.seed,
		},
	}, engine.Hooks{
		Slot: func(slot, reused, cleared int) {
			j.spans.slot = time.Now()
			if proceed() && cleared > 0 {
				j.narrate(j.narration.CacheReset(slot, reused))
			}
		},
		Piece: func(text string, i int) {
			if !proceed() {
				return
			}
			if err := j.pub.publish(ctx, &jobs.Token{Header: jobs.Header{Type: jobs.TypeToken}, T: text, I: i}); errors.Is(err, errLost) {
				cancel(errLost)
			} else if err != nil {
				cancel(errStore)
			}
			now := time.Now()
			if i == 0 {
				j.spans.first = now
				j.w.cfg.Metrics.firstToken(j.begin)
			} else {
				j.w.cfg.Metrics.nextToken(now.Sub(last))
			}
			last = now
			if (i+1)%j.w.cfg.ProgressEvery == 0 {
				j.narrate(j.narration.TokenProgress(i + 1))
			}
		},
	})
}

// finish ends a generation: it records the job's measures, narrates how it
// ended and publishes its end or error event, or returns the cause that
// hands it back to the queue. cause is why the generation's context ended,
// if it did.
func (j *job) finish(ctx context.Context, res engine.Result, err, cause error) error {
	if err != nil {
		j.record(string(jobs.InferenceFailed), res)
		j.narrate(j.narration.InferenceFailed(jobs.InferenceFailed, err.Error()))
		return j.pub.publish(ctx, &jobs.ErrorEvent{Header: jobs.Header{Type: jobs.TypeError},
			Error: jobs.Error{Code: jobs.InferenceFailed, Message: err.Error()}})
	}
	reason, handBack := outcome(res, cause)
	if errors.Is(handBack, errLost) {
		return handBack // settle tells it
	}
	if handBack != nil {
		j.record("handed_back", res)
		return handBack
	}
	j.record(string(reason), res)
	j.narrate(j.narration.InferenceComplete(res.PromptTokens, res.Pieces, res.Time, reason))
	return j.pub.publish(ctx, end(res, reason))
}

// outcome maps a finished generation to the job's stop reason, or to the
// cause (errShutdown, errStore) that hands the job back instead, or
// errLost.
func outcome(res engine.Result, cause error) (jobs.StopReason, error) {
	if res.Reason == engine.StopCancelled {
		switch {
		case errors.Is(cause, errShutdown), errors.Is(cause, errStore), errors.Is(cause, errLost):
			return "", cause
		case errors.Is(cause, errTimeout):
			return jobs.StopTimeout, nil
		}
	}
	return stopReason(res.Reason), nil
}

// narrate tells a per-request event on stdout and the job's subject.
func (j *job) narrate(n jobs.Narration) { j.narrator.Tell(n, j.pub) }

// record counts the job's outcome and tokens in the metrics.
func (j *job) record(outcome string, res engine.Result) {
	j.w.cfg.Metrics.settled(outcome, res.PromptTokens, res.PromptCached, res.Tokens)
	j.spans.job.SetAttributes(attribute.String("llmworker.outcome", strings.ToLower(outcome)))
}

func stopReason(r engine.StopReason) jobs.StopReason {
	return map[engine.StopReason]jobs.StopReason{
		engine.StopMaxTokens: jobs.StopMaxTokens,
		engine.StopEOS:       jobs.StopEOS,
		engine.StopSequence:  jobs.StopSequence,
		engine.StopCancelled: jobs.StopCancelled,
	}[r]
}

// keepAlive tells the queue the job is in progress while it runs, so a long
// generation keeps its job past the ack wait.
func (j *job) keepAlive(ctx context.Context) {
	tick := time.NewTicker(j.w.cfg.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			j.msg.InProgress()
		case <-ctx.Done():
			return
		}
	}
}

// settle acks the message once the job's events are stored, or hands it
// back: at once on shutdown, after a pause when storing failed. A job
// lost to another worker is left alone.
func (j *job) settle(runErr error) {
	var storeErr error
	if j.pub != nil {
		storeErr = j.pub.failure()
	}
	log := j.log
	switch {
	case errors.Is(runErr, errLost), errors.Is(storeErr, errLost):
		// The message is the new owner's now: settling it would settle
		// their run.
		j.w.cfg.Metrics.settled("lost", 0, 0, 0)
		j.narrator.Tell(narration.JobLost(j.w.cfg.WorkerID, j.req.JobID, j.attempt()))
	case errors.Is(runErr, errShutdown):
		log.Info().Msg("handing the job back to the queue")
		if j.pub != nil {
			// Told on the job's subject, it also keeps the hand-back from
			// counting as a failed attempt.
			j.narrate(j.narration.HandedBack())
		}
		j.msg.Nak()
	case runErr != nil || storeErr != nil:
		log.Error().AnErr("error", runErr).AnErr("store_error", storeErr).Msg("job's events could not be stored; handing it back")
		j.msg.NakWithDelay(2 * time.Second)
	default:
		j.msg.Ack()
	}
}
