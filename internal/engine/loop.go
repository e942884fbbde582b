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
	sampler   *llama.SamplingContext
	maxTokens int
	text      textBuffer
	updates   chan update
	result    Result

	slot    int
	pending []int // tokens to feed: the prompt's rest, then the last sampled
	fed     []int // tokens in the slot's KV cache, reused or decoded
	iBatch  int   // the batch index of this step's logits, or -1
	started time.Time
}

// run is the decode loop: admit waiting sequences into free slots, feed
// every active sequence into one batch, decode once, sample each sequence
// whose logits came out, repeat. It owns the llama context.
func (e *Engine) run(batch *llama.Batch) {
	defer close(e.done)
	defer batch.Free()
	// llama.cpp computes on the calling thread: keeping the loop on one OS
	// thread raised the NATS path from about 4,400 to 5,400 tokens/s (85–90%
	// to 99–100% of the raw engine) on a 2-core machine, in alternating A/B
	// runs of make bench.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	slots := make([]*sequence, e.cfg.Parallel)
	cached := make([][]int, e.cfg.Parallel) // the tokens in each slot's KV cache
	active := 0
	// leave ends a sequence whose tokens stay in its slot's cache.
	leave := func(i int, reason StopReason) {
		e.finish(slots[i], reason, nil)
		slots[i], cached[i] = nil, slots[i].fed
		active--
	}
	for {
		// Admit: block when idle, otherwise take what is waiting.
		for active < len(slots) {
			var seq *sequence
			if active == 0 {
				select {
				case seq = <-e.submit:
				case <-e.quit:
					return
				}
			} else {
				select {
				case seq = <-e.submit:
				default:
				}
			}
			if seq == nil {
				break
			}
			i := bestSlot(slots, cached, seq.pending)
			e.admit(seq, i, cached[i])
			slots[i] = seq
			active++
		}

		select {
		case <-e.quit:
			for i, seq := range slots {
				if seq != nil {
					e.finish(seq, StopCancelled, nil)
					slots[i] = nil
				}
			}
			return
		default:
		}

		// Cancelled sequences leave between steps: a decode cannot be
		// interrupted, so this is within one step of the cancel.
		for i, seq := range slots {
			if seq != nil && seq.ctx.Err() != nil {
				leave(i, StopCancelled)
			}
		}
		if active == 0 {
			continue
		}

		batch.Clear()
		for _, seq := range slots {
			if seq == nil {
				continue
			}
			n := min(len(seq.pending), e.cfg.BatchSize)
			last := n == len(seq.pending) // logits only for the prompt's last token
			for j := range n {
				batch.Add(seq.pending[j], nil, len(seq.fed)+j, last && j == n-1, seq.slot)
			}
			seq.fed = append(seq.fed, seq.pending[:n]...)
			seq.iBatch = -1
			if last {
				seq.iBatch = batch.NumTokens() - 1
			}
			seq.pending = seq.pending[n:]
		}

		if err := e.lc.Decode(batch); err != nil {
			for i, seq := range slots {
				if seq != nil {
					e.finish(seq, 0, fmt.Errorf("decode: %w", err))
					e.lc.KvCacheSeqRm(i, 0, -1) // what it holds is unknown now
					slots[i], cached[i] = nil, nil
				}
			}
			active = 0
			continue
		}

		for i, seq := range slots {
			if seq == nil || seq.iBatch < 0 {
				continue
			}
			if reason, ok := e.sample(seq); ok {
				leave(i, reason)
			}
		}
	}
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
	seq.updates <- update{slot: i, reused: keep, cleared: len(cached) - keep}
}

// sample takes the next token of seq and says whether seq is done.
func (e *Engine) sample(seq *sequence) (StopReason, bool) {
	token := seq.sampler.Sample(e.lc, seq.iBatch)
	seq.sampler.Accept(token, true)
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

func (e *Engine) emit(seq *sequence, text string) {
	if text == "" {
		return
	}
	seq.updates <- update{text: text, i: seq.result.Pieces}
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
	seq.updates <- update{final: &result, err: err}
	close(seq.updates)
}
