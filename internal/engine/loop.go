package engine

import (
	"fmt"
	"runtime"
	"time"

	"github.com/ollama/ollama/llama"
)

// sequence is one generation inside the decode loop, which alone touches
// its fields once it is submitted.
type sequence struct {
	ctx       interface{ Err() error }
	sampler   *llama.SamplingContext // nil when greedy
	maxTokens int
	text      textBuffer
	mail      *mailbox
	result    Result

	slot    int
	pending []int // tokens to feed: the prompt's rest, then the last sampled
	fed     []int // tokens in the slot's KV cache, reused or decoded
	iBatch  int   // the batch index of this step's logits, or -1
	started time.Time
}

// loop is the decode loop's state, touched only by its goroutine.
type loop struct {
	e      *Engine
	batch  *llama.Batch
	slots  []*sequence
	cached [][]int // the tokens in each slot's KV cache
	active int
	step   time.Duration // a decode step's time, a moving average
	// gatherMax bounds how long an idle loop waits for jobs sent together.
	gatherMax time.Duration
}

func newLoop(e *Engine, batch *llama.Batch) *loop {
	return &loop{e: e, batch: batch, slots: make([]*sequence, e.cfg.Parallel), cached: make([][]int, e.cfg.Parallel), gatherMax: gatherMax}
}

// run is the decode loop: admit waiting sequences into free slots, drop the
// cancelled, feed every active sequence into one batch, decode once, sample
// each sequence whose logits came out, repeat. It owns the llama context.
func (e *Engine) run(batch *llama.Batch) {
	defer close(e.done)
	defer batch.Free()
	// llama.cpp computes on the calling thread; a loop that keeps one OS
	// thread is measurably faster (the README's benchmarks give figures).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l := newLoop(e, batch)
	for l.admit() {
		l.dropCancelled()
		if l.active == 0 {
			continue
		}
		l.flush(l.fill())
		if err := l.decode(); err != nil {
			l.fail(fmt.Errorf("decode: %w", err))
			continue
		}
		l.sample()
	}
	l.cancelAll()
}

// admit takes waiting sequences into free slots: it blocks while no
// sequence is active, otherwise takes only what is already waiting. It
// reports false once the engine is closing.
//
// Jobs sent together reach an idle loop a little apart (a queue delivers
// them one by one); a decode cannot be joined once started, so the first
// would run a whole step, often its prompt's, before the others join. An
// idle loop therefore waits a moment after the first arrival (an eighth of
// a step, at most gatherMax) so that they start in the same step.
func (l *loop) admit() bool {
	var gather *time.Timer
	defer func() {
		if gather != nil {
			gather.Stop()
		}
	}()
	for l.active < len(l.slots) {
		var seq *sequence
		switch {
		case l.active == 0:
			select {
			case seq = <-l.e.submit:
			case <-l.e.quit:
				return false
			}
			if w := min(l.step/8, l.gatherMax); w > 0 {
				gather = time.NewTimer(w)
			}
		case gather != nil:
			select {
			case seq = <-l.e.submit:
			case <-gather.C:
				gather = nil
			case <-l.e.quit:
				return false
			}
		default:
			select {
			case seq = <-l.e.submit:
			default:
			}
		}
		if seq == nil {
			break
		}
		i := bestSlot(l.slots, l.cached, seq.pending)
		l.e.admit(seq, i, l.cached[i])
		l.slots[i] = seq
		l.active++
	}
	select {
	case <-l.e.quit:
		return false
	default:
		return true
	}
}

// gatherMax is how long at most an idle loop waits for jobs sent together.
const gatherMax = 5 * time.Millisecond

// decode runs the step's batch and keeps a moving average of how long
// steps take.
func (l *loop) decode() error {
	start := time.Now()
	err := l.e.lc.Decode(l.batch)
	l.step += (time.Since(start) - l.step) / 8
	return err
}

// dropCancelled ends the sequences whose caller gave up. A decode cannot
// be interrupted, so this is within one step of the cancel.
func (l *loop) dropCancelled() {
	for i, seq := range l.slots {
		if seq != nil && seq.ctx.Err() != nil {
			l.leave(i, StopCancelled)
		}
	}
}

// fill builds the step's batch. Every generating sequence feeds the token
// it sampled last; prompts share what is left of the step's prompt budget
// (PrefillChunk tokens), in slot order, so that a long prompt is absorbed
// over several steps while the running sequences keep generating between
// them. A sequence asks for logits only at its prompt's last token. It
// reports whether the batch holds prompt tokens.
func (l *loop) fill() (prompts bool) {
	l.batch.Clear()
	for _, seq := range l.slots {
		if seq != nil {
			seq.iBatch = -1
			if seq.result.Tokens > 0 {
				l.feed(seq, len(seq.pending))
			}
		}
	}
	budget := l.e.cfg.PrefillChunk
	for _, seq := range l.slots {
		if seq != nil && seq.result.Tokens == 0 && budget > 0 {
			n := min(len(seq.pending), budget)
			budget -= n
			l.feed(seq, n)
		}
	}
	return budget < l.e.cfg.PrefillChunk
}

// flush wakes the callers whose tokens would otherwise wait past
// wakeEvery, for the step about to run: one of the usual length, or a
// longer one when it feeds prompts.
func (l *loop) flush(prompts bool) {
	now, step := time.Now(), l.step
	if prompts {
		step = wakeEvery
	}
	for _, seq := range l.slots {
		if seq != nil {
			seq.mail.flush(now, step)
		}
	}
}

// feed adds the first n of seq's pending tokens to the batch.
func (l *loop) feed(seq *sequence, n int) {
	last := n == len(seq.pending)
	for j := range n {
		l.batch.Add(seq.pending[j], nil, len(seq.fed)+j, last && j == n-1, seq.slot)
	}
	seq.fed = append(seq.fed, seq.pending[:n]...)
	if last {
		seq.iBatch = l.batch.NumTokens() - 1
	}
	seq.pending = seq.pending[n:]
}

// sample takes the next token of every sequence whose logits came out of
// the step, and lets the finished leave.
func (l *loop) sample() {
	for i, seq := range l.slots {
		if seq == nil || seq.iBatch < 0 {
			continue
		}
		if reason, ok := l.e.sample(seq); ok {
			l.leave(i, reason)
		}
	}
}

// leave ends the sequence in slot i; its tokens stay in the slot's cache
// for a later prompt that repeats them.
func (l *loop) leave(i int, reason StopReason) {
	l.e.finish(l.slots[i], reason, nil)
	l.slots[i], l.cached[i] = nil, l.slots[i].fed
	l.active--
}

// fail ends every active sequence with err, clearing their slots: what
// their caches hold after a failed decode is unknown.
func (l *loop) fail(err error) {
	for i, seq := range l.slots {
		if seq != nil {
			l.e.finish(seq, 0, err)
			l.e.lc.KvCacheSeqRm(i, 0, -1)
			l.slots[i], l.cached[i] = nil, nil
		}
	}
	l.active = 0
}

// cancelAll ends every active sequence as the engine closes.
func (l *loop) cancelAll() {
	for i, seq := range l.slots {
		if seq != nil {
			l.e.finish(seq, StopCancelled, nil)
			l.slots[i] = nil
		}
	}
	l.active = 0
}

// bestSlot picks the free slot whose cache shares the longest prefix with
// prompt, so a prompt that repeats an earlier one (a conversation, a system
// prompt) skips what is already computed.
func bestSlot(slots []*sequence, cached [][]int, prompt []int) int {
	best, bestLen := -1, -1
	for i, seq := range slots {
		if seq != nil {
			continue
		}
		if n := commonPrefix(cached[i], prompt); n > bestLen {
			best, bestLen = i, n
		}
	}
	return best
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// admit puts seq in slot i, keeping the part of the slot's cache that its
// prompt repeats and clearing the rest.
func (e *Engine) admit(seq *sequence, i int, cached []int) {
	keep := commonPrefix(cached, seq.pending)
	if keep == len(seq.pending) {
		keep-- // the prompt's last token is decoded again for its logits
	}
	if len(cached) > keep && !e.lc.KvCacheSeqRm(i, keep, -1) {
		e.lc.KvCacheSeqRm(i, 0, -1) // this model's cache cannot be cut: clear it
		keep = 0
	}
	seq.slot, seq.started, seq.iBatch = i, time.Now(), -1
	seq.fed = append(make([]int, 0, len(seq.pending)+seq.maxTokens), seq.pending[:keep]...)
	seq.pending = seq.pending[keep:]
	seq.result.PromptCached = keep
	seq.mail.put(update{slot: i, reused: keep, cleared: len(cached) - keep}, seq.started, true)
}

// sample takes the next token of seq and says whether seq is done.
func (e *Engine) sample(seq *sequence) (StopReason, bool) {
	token := e.pick(seq)
	if seq.result.Tokens == 0 {
		seq.result.PromptTime = time.Since(seq.started)
	}
	seq.result.Tokens++
	if e.model.TokenIsEog(token) {
		return StopEOS, true
	}
	text, stop := seq.text.add(e.model.TokenToPiece(token))
	e.emit(seq, text)
	if stop != "" {
		seq.result.StopSequence = stop
		return StopSequence, true
	}
	if seq.result.Tokens >= seq.maxTokens {
		return StopMaxTokens, true
	}
	seq.pending = append(seq.pending[:0], token)
	return 0, false
}

// pick samples seq's next token from this step's logits. Greedy skips
// llama.cpp's sampler chain, which copies and sorts the whole vocabulary to
// keep one token: the argmax of the logits is the same token.
func (e *Engine) pick(seq *sequence) int {
	if seq.sampler == nil {
		return argmax(e.lc.GetLogitsIth(seq.iBatch))
	}
	token := seq.sampler.Sample(e.lc, seq.iBatch)
	seq.sampler.Accept(token, true)
	return token
}

// argmax is the index of the largest of v, the first on a tie.
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func (e *Engine) emit(seq *sequence, text string) {
	if text == "" {
		return
	}
	seq.mail.put(update{text: text, i: seq.result.Pieces}, time.Now(), seq.result.Pieces == 0)
	seq.result.Pieces++
}

// finish ends seq: what its text buffer still holds goes out, unless a
// stop sequence ended it, then the result.
func (e *Engine) finish(seq *sequence, reason StopReason, err error) {
	if reason != StopSequence && err == nil {
		e.emit(seq, seq.text.flush())
	}
	seq.result.Reason = reason
	if !seq.started.IsZero() {
		seq.result.Time = time.Since(seq.started)
	}
	result := seq.result
	seq.mail.put(update{final: &result, err: err}, time.Now(), true)
}
