package engine

import (
	"errors"

	"github.com/ollama/ollama/llama"
)

// SchemaGrammar converts a JSON Schema into the llama.cpp grammar (GBNF)
// that constrains generation to JSON matching it, as llama.cpp's server
// does for response_format. An invalid schema, or one that uses what the
// converter does not support, is an error.
func SchemaGrammar(schema []byte) (string, error) {
	g := llama.SchemaToGrammar(schema)
	if len(g) == 0 {
		return "", errors.New("llama.cpp cannot turn this JSON Schema into a grammar (invalid, or it uses an unsupported feature such as an unresolvable $ref)")
	}
	return string(g), nil
}
