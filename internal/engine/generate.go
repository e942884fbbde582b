package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/ollama/ollama/llama"
)

// Sampling are the sampler's settings. Temperature 0 is greedy.
type Sampling struct {
	Temperature float64
	TopK        int
	TopP        float64
	MinP        float64
	// RepetitionPenalty 1 (or 0) is off.
	RepetitionPenalty float64
	Seed              uint32
}

// Request is one generation.
type Request struct {
	Prompt    Prompt
	MaxTokens int
	Sampling  Sampling
	// Stop ends the generation at the first of these strings, which is not
	// part of the output.
	Stop []string
	// Grammar, when set, constrains the output to a llama.cpp grammar
	// (SchemaGrammar makes one from a JSON Schema).
	Grammar string
}

// StopReason says why a generation ended.
type StopReason int

// The reasons a generation ends.
const (
	StopMaxTokens StopReason = iota
	StopEOS
	StopSequence
	// StopCancelled: the caller's context ended; its cause says why.
	StopCancelled
)

func (r StopReason) String() string {
	return [...]string{"MAX_TOKENS", "EOS", "STOP_SEQUENCE", "CANCELLED"}[r]
}

// Result sums a generation up.
type Result struct {
	PromptTokens int
	// PromptCached counts the prompt's tokens found in the slot's cache,
	// left from the slot's previous generation, and not computed again.
	PromptCached int
	// Tokens counts the tokens the model generated; Pieces counts the texts
	// handed to the caller (one per token, but text held back by a partial
	// character or stop sequence comes out with a later token).
	Tokens       int
	Pieces       int
	Reason       StopReason
	StopSequence string
	// PromptTime runs from taking a slot to the first token, Time from
	// taking a slot to the end.
	PromptTime time.Duration
	Time       time.Duration
}

// Hooks receive a generation's progress on the caller's goroutine, in order.
type Hooks struct {
	// Slot is called when the generation gets a slot: reused tokens of the
	// slot's KV cache were kept (the prompt's prefix that the slot's last
	// generation shares), cleared tokens of it were dropped.
	Slot func(slot, reused, cleared int)
	// Piece is called with each text, i counting from 0.
	Piece func(text string, i int)
}

// update is what the decode loop tells a sequence's caller.
type update struct {
	slot    int
	reused  int
	cleared int
	text    string
	i       int
	final   *Result
	err     error
}

// Generate runs one generation and calls hooks as it goes. It waits for a
// free slot, and returns when the generation ends: at max tokens, EOS, a
// stop sequence, or within one decode step of ctx ending (StopCancelled).
func (e *Engine) Generate(ctx context.Context, req Request, hooks Hooks) (Result, error) {
	if err := e.checkFits(req.Prompt, req.MaxTokens); err != nil {
		return Result{}, err
	}
	var sampler *llama.SamplingContext
	if !req.Sampling.greedy() || req.Grammar != "" {
		params := samplingParams(req.Sampling)
		params.Grammar = req.Grammar
		var err error
		if sampler, err = llama.NewSamplingContext(e.model, params); err != nil {
			return Result{}, fmt.Errorf("sampler: %w", err)
		}
	}
	seq := &sequence{
		ctx:       ctx,
		pending:   req.Prompt.tokens,
		sampler:   sampler,
		maxTokens: req.MaxTokens,
		text:      textBuffer{stops: req.Stop},
		// The loop never waits for a slow caller.
		mail:   newMailbox(),
		result: Result{PromptTokens: req.Prompt.Len()},
	}
	select {
	case e.submit <- seq:
	case <-ctx.Done():
		return Result{PromptTokens: req.Prompt.Len(), Reason: StopCancelled}, nil
	case <-e.quit:
		return Result{}, ErrClosed
	}
	var got []update
	for {
		got = seq.mail.take(got)
		for _, u := range got {
			switch {
			case u.final != nil:
				return *u.final, u.err
			case u.text != "":
				if hooks.Piece != nil {
					hooks.Piece(u.text, u.i)
				}
			default:
				if hooks.Slot != nil {
					hooks.Slot(u.slot, u.reused, u.cleared)
				}
			}
		}
	}
}

// greedy says the settings pick the most likely token every time: at
// temperature 0 top-k, top-p and min-p all keep it, and only a repetition
// penalty could change which token that is.
func (s Sampling) greedy() bool {
	return s.Temperature == 0 && (s.RepetitionPenalty == 0 || s.RepetitionPenalty == 1)
}

func samplingParams(s Sampling) llama.SamplingParams {
	penalty := float32(s.RepetitionPenalty)
	if penalty == 0 {
		penalty = 1
	}
	// Go's zero values are not "off" in llama.cpp: typical_p and the
	// penalties must be 1 to do nothing.
	return llama.SamplingParams{
		TopK:          s.TopK,
		TopP:          float32(s.TopP),
		MinP:          float32(s.MinP),
		TypicalP:      1,
		Temp:          float32(s.Temperature),
		RepeatLastN:   64,
		PenaltyRepeat: penalty,
		Seed:          s.Seed,
	}
}
