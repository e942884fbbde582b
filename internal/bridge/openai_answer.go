package bridge

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/openai"
)

// answer is how a completion reaches its client: whole, or streamed.
type answer interface {
	chat() bool
	// start is called when the job starts (its first started event).
	start() error
	token(text string) error
	narration(event []byte) error
	finish(end *jobs.End)
	fail(e *openai.Error)
}

// wholeAnswer gathers the text and answers once the job ends.
type wholeAnswer struct {
	c    *completion
	w    http.ResponseWriter
	text strings.Builder
}

func (a *wholeAnswer) chat() bool { return a.c.chat }

// start also drops what an earlier attempt said: a job handed to another
// worker starts over.
func (a *wholeAnswer) start() error { a.text.Reset(); return nil }

func (a *wholeAnswer) token(text string) error { a.text.WriteString(text); return nil }

func (a *wholeAnswer) narration([]byte) error { return nil }

func (a *wholeAnswer) fail(e *openai.Error) { writeOpenAIError(a.w, e) }

func (a *wholeAnswer) finish(end *jobs.End) {
	c := a.c
	reason := finishReason(end)
	if c.chat {
		writeJSON(a.w, http.StatusOK, openai.ChatCompletion{
			ID: c.id(), Object: openai.ObjectChatCompletion, Created: c.created, Model: c.model,
			Choices: []openai.ChatChoice{{
				Message:      openai.AssistantReply{Role: jobs.RoleAssistant, Content: a.text.String()},
				FinishReason: reason, Logprobs: json.RawMessage("null"),
			}},
			Usage: usage(end),
		})
		return
	}
	writeJSON(a.w, http.StatusOK, openai.Completion{
		ID: c.id(), Object: openai.ObjectTextCompletion, Created: c.created, Model: c.model,
		Choices: []openai.CompletionChoice{{Text: a.text.String(), FinishReason: &reason, Logprobs: json.RawMessage("null")}},
		Usage:   usage(end),
	})
}

// streamAnswer streams chunks as Server-Sent Events: data lines of JSON,
// then data: [DONE]. Its status line waits for the job's first event, so
// a job the worker refuses still gets its HTTP error.
type streamAnswer struct {
	c       *completion
	w       http.ResponseWriter
	out     *sseStream
	started bool
}

func (a *streamAnswer) chat() bool { return a.c.chat }

func (a *streamAnswer) start() error {
	h := a.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	a.w.WriteHeader(http.StatusOK)
	a.started = true
	if !a.c.chat {
		return a.out.flush()
	}
	empty := ""
	return a.send(a.chunk(openai.Delta{Role: jobs.RoleAssistant, Content: &empty}, nil))
}

func (a *streamAnswer) token(text string) error {
	if a.c.chat {
		return a.send(a.chunk(openai.Delta{Content: &text}, nil))
	}
	return a.send(a.textChunk(text, nil))
}

// narration sends the event in a chunk without choices, when the client
// asked for it (X-Narration: true).
func (a *streamAnswer) narration(event []byte) error {
	if !a.c.narrate {
		return nil
	}
	if a.c.chat {
		ch := a.chunk(openai.Delta{}, nil)
		ch.Choices, ch.Narration = []openai.ChunkChoice{}, event
		return a.send(ch)
	}
	ch := a.textChunk("", nil)
	ch.Choices, ch.Narration = []openai.CompletionChoice{}, event
	return a.send(ch)
}

func (a *streamAnswer) finish(end *jobs.End) {
	reason := finishReason(end)
	var last any = a.textChunk("", &reason)
	if a.c.chat {
		last = a.chunk(openai.Delta{}, &reason)
	}
	if a.send(last) != nil {
		return
	}
	if a.c.usage {
		if a.c.chat {
			ch := a.chunk(openai.Delta{}, nil)
			ch.Choices, ch.Usage = []openai.ChunkChoice{}, usage(end)
			last = ch
		} else {
			ch := a.textChunk("", nil)
			ch.Choices, ch.Usage = []openai.CompletionChoice{}, usage(end)
			last = ch
		}
		if a.send(last) != nil {
			return
		}
	}
	a.out.write([]byte("data: [DONE]\n\n"))
}

// fail answers the error with its status when nothing was sent yet, else
// ends the stream with it as a data line, which the clients raise.
func (a *streamAnswer) fail(e *openai.Error) {
	if !a.started {
		writeOpenAIError(a.w, e)
		return
	}
	a.send(openai.ErrorBody{Error: e})
}

func (a *streamAnswer) chunk(d openai.Delta, reason *string) openai.ChatChunk {
	c := a.c
	return openai.ChatChunk{ID: c.id(), Object: openai.ObjectChatChunk, Created: c.created, Model: c.model,
		Choices: []openai.ChunkChoice{{Delta: d, FinishReason: reason, Logprobs: json.RawMessage("null")}}}
}

func (a *streamAnswer) textChunk(text string, reason *string) openai.Completion {
	c := a.c
	return openai.Completion{ID: c.id(), Object: openai.ObjectTextCompletion, Created: c.created, Model: c.model,
		Choices: []openai.CompletionChoice{{Text: text, FinishReason: reason, Logprobs: json.RawMessage("null")}}}
}

func (a *streamAnswer) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.out.write(append(append([]byte("data: "), data...), '\n', '\n'))
}
