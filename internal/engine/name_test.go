package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

func TestModelName(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "tiny-q8.gguf")
	writeGGUF(t, named, ggml.KV{"general.architecture": "llama", "general.name": "Tiny Llama"})
	unnamed := filepath.Join(dir, "tiny-q4.gguf")
	writeGGUF(t, unnamed, ggml.KV{"general.architecture": "llama"})
	placeholder := filepath.Join(dir, "stories.gguf")
	writeGGUF(t, placeholder, ggml.KV{"general.architecture": "llama", "general.name": "llama"})
	for path, want := range map[string]string{
		named:                           "Tiny Llama",
		unnamed:                         "tiny-q4",
		filepath.Join(dir, "gone.gguf"): "gone",
		filepath.Join(dir, "model.bin"): "model.bin",
	} {
		if got := modelName(path); got != want {
			t.Errorf("modelName(%s) = %q, want %q", filepath.Base(path), got, want)
		}
	}
}

func writeGGUF(t *testing.T, path string, kv ggml.KV) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ggml.WriteGGUF(f, kv, nil); err != nil {
		t.Fatal(err)
	}
}
