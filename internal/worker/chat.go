package worker

import (
	"github.com/narrated/llmworker/internal/engine"
	"github.com/narrated/llmworker/internal/jobs"
)

// input is what a request asks the engine for: the prompt text (its chat
// rendered through the model's template) and the grammar its json_schema
// constrains the output with. Its error names the field at fault.
func (w *Worker) input(req jobs.Request) (text, grammar string, err error) {
	text = req.Prompt
	if len(req.Messages) > 0 {
		msgs := make([]engine.Message, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = engine.Message{Role: m.Role, Content: m.Content}
		}
		if text, err = w.engine.RenderChat(msgs); err != nil {
			return "", "", &jobs.Error{Code: jobs.InvalidRequest, Field: "messages", Message: err.Error()}
		}
	}
	if len(req.JSONSchema) > 0 && string(req.JSONSchema) != "null" {
		if grammar, err = engine.SchemaGrammar(req.JSONSchema); err != nil {
			return "", "", &jobs.Error{Code: jobs.InvalidRequest, Field: "json_schema", Message: err.Error()}
		}
	}
	return text, grammar, nil
}
