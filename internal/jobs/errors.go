package jobs

import (
	"fmt"
	"strconv"
	"strings"
)

// Code is an error code that travels on the wire: clients switch on it,
// never on the message.
type Code string

// The error codes of an error event and of the bridge's JSON errors.
const (
	// InvalidRequest: the request broke a rule of the contract.
	InvalidRequest Code = "INVALID_REQUEST"
	// ContextOverflow: prompt plus max_tokens do not fit the model's context.
	ContextOverflow Code = "CONTEXT_OVERFLOW"
	// InferenceFailed: the engine failed while generating.
	InferenceFailed Code = "INFERENCE_FAILED"
	// RetriesExhausted: every attempt the job was allowed failed (its
	// workers died, stalled or could not store its events).
	RetriesExhausted Code = "RETRIES_EXHAUSTED"
)

// Error is a contract error: a code, a sentence for people, and the JSON
// field at fault when there is one.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Sentence is the error as people read it: the field, then the rule it
// broke ("top_p must be from 0 to 1"), or the message alone when there is
// no field or the message names it itself (`unknown field "evil"`).
func (e *Error) Sentence() string {
	if e.Field == "" || strings.Contains(e.Message, strconv.Quote(e.Field)) {
		return e.Message
	}
	return e.Field + " " + e.Message
}

// Is matches any *Error with the same code, so errors.Is(err,
// &jobs.Error{Code: jobs.InvalidRequest}) asks "was it invalid?".
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: InvalidRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}
