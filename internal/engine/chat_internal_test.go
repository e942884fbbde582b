package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

// A GGUF's Jinja chat template is matched to Ollama's Go template of its
// family, which renders the chat as the model was trained on it.
func TestLoadChatTemplate(t *testing.T) {
	chatml := "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
	for _, c := range []struct {
		name, jinja, template, want string
	}{
		{"chatml", chatml, "chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"none", "", PlainChat, "System: Be brief.\n\nUser: Hi\n\nAssistant:"},
		{"unknown", "{{ nothing like any template }}", PlainChat, "System: Be brief.\n\nUser: Hi\n\nAssistant:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.gguf")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			kv := ggml.KV{"general.architecture": "llama"}
			if c.jinja != "" {
				kv["tokenizer.chat_template"] = c.jinja
			}
			if err := ggml.WriteGGUF(f, kv, nil); err != nil {
				t.Fatal(err)
			}
			f.Close()
			tmpl := loadChatTemplate(path)
			if tmpl.name != c.template {
				t.Fatalf("template %q; want %q", tmpl.name, c.template)
			}
			got, err := tmpl.render([]Message{{"system", "Be brief."}, {"user", "Hi"}})
			if err != nil || got != c.want {
				t.Fatalf("rendered %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
