// Command mkmodel writes a Llama GGUF of a given shape with random weights,
// for measuring speed on a model of real size: throughput does not depend
// on what the weights are. The default shape has 134M parameters (768
// embedding, 12 layers, 12 heads, 2,048 feed-forward, 32,000 vocabulary).
//
//	go run ./cmd/mkmodel -type q8_0 -o llama-134m-q8_0.gguf
//
// It uses ollama's pure-Go GGUF writer; nothing of llama.cpp is needed.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var s Shape
	flag.IntVar(&s.Embedding, "embedding", 768, "embedding length")
	flag.IntVar(&s.Layers, "layers", 12, "transformer blocks")
	flag.IntVar(&s.Heads, "heads", 12, "attention heads (and key/value heads)")
	flag.IntVar(&s.FeedForward, "ff", 2048, "feed-forward length")
	flag.IntVar(&s.Vocab, "vocab", 32000, "vocabulary size (at least 512)")
	flag.IntVar(&s.Context, "context", 2048, "training context length the file declares")
	typ := flag.String("type", "f16", "weight type: f16 or q8_0")
	out := flag.String("o", "", "output file (required)")
	seed := flag.Uint64("seed", 1, "random seed of the weights")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkmodel: -o is required")
		flag.Usage()
		os.Exit(2)
	}
	if err := Write(*out, s, *typ, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkmodel:", err)
		os.Exit(1)
	}
}
