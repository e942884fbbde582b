package engine

import (
	"fmt"
	"os"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/fs/ggml"
	"github.com/ollama/ollama/template"
)

// Message is one turn of a chat: Role is system, user or assistant.
type Message struct {
	Role    string
	Content string
}

// PlainChat names the format of a model that has no chat template, or one
// that no known template matches: each message as "Role: content" followed
// by a blank line, then "Assistant:" for the model to go on from.
const PlainChat = "plain"

// chatTemplate renders chats for one model.
type chatTemplate struct {
	// name is the matched template's name, or PlainChat.
	name string
	tmpl *template.Template // nil for PlainChat
}

// loadChatTemplate reads the GGUF's tokenizer.chat_template (a Jinja
// template) and maps it to the Go template of the same family that
// Ollama keeps for the common ones. A model without one, or with one that
// matches none, gets the plain format.
func loadChatTemplate(path string) chatTemplate {
	f, err := os.Open(path)
	if err != nil {
		return chatTemplate{name: PlainChat}
	}
	defer f.Close()
	meta, err := ggml.Decode(f, 0) // 0: skip the large arrays (the vocabulary)
	if err != nil {
		return chatTemplate{name: PlainChat}
	}
	jinja := meta.KV().ChatTemplate()
	if jinja == "" {
		return chatTemplate{name: PlainChat}
	}
	named, err := template.Named(jinja)
	if err != nil {
		return chatTemplate{name: PlainChat}
	}
	tmpl, err := template.Parse(string(named.Bytes))
	if err != nil {
		return chatTemplate{name: PlainChat}
	}
	return chatTemplate{name: named.Name, tmpl: tmpl}
}

// render turns a chat into the prompt text the model was trained on,
// ending where the assistant's next turn begins.
func (c chatTemplate) render(msgs []Message) (string, error) {
	if c.tmpl == nil {
		return renderPlain(msgs), nil
	}
	am := make([]api.Message, len(msgs))
	for i, m := range msgs {
		am[i] = api.Message{Role: m.Role, Content: m.Content}
	}
	var b strings.Builder
	if err := c.tmpl.Execute(&b, template.Values{Messages: am}); err != nil {
		return "", fmt.Errorf("chat template %s: %w", c.name, err)
	}
	return b.String(), nil
}

func renderPlain(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		role := m.Role
		if role != "" {
			role = strings.ToUpper(role[:1]) + role[1:]
		}
		b.WriteString(role + ": " + m.Content + "\n\n")
	}
	if len(msgs) > 0 && msgs[len(msgs)-1].Role == "assistant" {
		return strings.TrimSuffix(b.String(), "\n\n") // the model continues that turn
	}
	b.WriteString("Assistant:")
	return b.String()
}

// RenderChat turns a chat into prompt text through the model's chat
// template (Info().ChatTemplate names it).
func (e *Engine) RenderChat(msgs []Message) (string, error) {
	if len(msgs) == 0 {
		return "", fmt.Errorf("a chat needs at least one message")
	}
	return e.chat.render(msgs)
}
