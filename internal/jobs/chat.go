package jobs

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Limits of a chat and of a JSON schema. subjects.md lists them.
const (
	MaxMessages = 1024
	// MaxSchemaBytes bounds a json_schema.
	MaxSchemaBytes = 16 << 10
)

// The roles of a chat message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of a chat.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// validateInput checks that the request has a prompt or messages (not
// both), within the limits, and that a json_schema is a JSON object.
func (r *Request) validateInput() error {
	switch {
	case r.Prompt != "" && len(r.Messages) > 0:
		return invalid("messages", "give prompt or messages, not both")
	case len(r.Messages) > 0:
		if err := validateMessages(r.Messages); err != nil {
			return err
		}
	default:
		if err := validateText("prompt", r.Prompt); err != nil {
			return err
		}
	}
	return validateSchema(r.JSONSchema)
}

func validateText(field, text string) error {
	if n := utf8.RuneCountInString(text); n == 0 {
		return invalid(field, "is required and must not be empty")
	} else if n > MaxPromptChars {
		return invalid(field, "is %d characters; the limit is %d", n, MaxPromptChars)
	}
	if !utf8.ValidString(text) {
		return invalid(field, "must be valid UTF-8")
	}
	return nil
}

func validateMessages(msgs []Message) error {
	if len(msgs) > MaxMessages {
		return invalid("messages", "has %d messages; the limit is %d", len(msgs), MaxMessages)
	}
	chars := 0
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant:
		default:
			return invalid("messages", "message %d: role must be system, user or assistant, not %q", i, m.Role)
		}
		if !utf8.ValidString(m.Content) {
			return invalid("messages", "message %d: content must be valid UTF-8", i)
		}
		chars += utf8.RuneCountInString(m.Content)
	}
	if chars > MaxPromptChars {
		return invalid("messages", "hold %d characters; the limit is %d", chars, MaxPromptChars)
	}
	return nil
}

func validateSchema(schema json.RawMessage) error {
	if len(schema) == 0 || bytes.Equal(bytes.TrimSpace(schema), []byte("null")) {
		return nil
	}
	if len(schema) > MaxSchemaBytes {
		return invalid("json_schema", "is %d bytes; the limit is %d", len(schema), MaxSchemaBytes)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(schema, &obj) != nil || obj == nil {
		return invalid("json_schema", "must be a JSON Schema object")
	}
	return nil
}
