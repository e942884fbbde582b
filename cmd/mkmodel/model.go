package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/fs/ggml"
)

// Shape is a Llama's size.
type Shape struct {
	Embedding, Layers, Heads, FeedForward, Vocab, Context int
}

// Params counts the shape's weights.
func (s Shape) Params() int {
	e, f := s.Embedding, s.FeedForward
	block := 4*e*e + 3*e*f + 2*e
	return 2*s.Vocab*e + s.Layers*block + e
}

// Write writes a Llama of shape s with random weights of type typ (f16 or
// q8_0) to path, through a temporary file so that an interrupted run leaves
// nothing that looks like a model.
func Write(path string, s Shape, typ string, seed uint64) error {
	kind, fileType, err := weightType(typ)
	if err != nil {
		return err
	}
	if s.Vocab < 512 || s.Embedding%s.Heads != 0 || s.Embedding%32 != 0 || s.FeedForward%32 != 0 {
		return fmt.Errorf("shape %+v: the vocabulary needs at least 512 tokens, the embedding a multiple of the heads, and both sizes multiples of 32", s)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is there
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := ggml.WriteGGUF(tmp, metadata(s, fileType), tensors(s, kind, seed)); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func weightType(typ string) (ggml.TensorType, uint32, error) {
	switch typ {
	case "f16":
		return ggml.TensorTypeF16, 1, nil // LLAMA_FTYPE_MOSTLY_F16
	case "q8_0":
		return ggml.TensorTypeQ8_0, 7, nil // LLAMA_FTYPE_MOSTLY_Q8_0
	}
	return 0, 0, fmt.Errorf("weight type %q: want f16 or q8_0", typ)
}

func metadata(s Shape, fileType uint32) ggml.KV {
	tokens, scores, types := vocabulary(s.Vocab)
	return ggml.KV{
		"general.architecture":                   "llama",
		"general.name":                           fmt.Sprintf("random llama %dM", s.Params()/1_000_000),
		"general.file_type":                      fileType,
		"llama.context_length":                   uint32(s.Context),
		"llama.embedding_length":                 uint32(s.Embedding),
		"llama.block_count":                      uint32(s.Layers),
		"llama.feed_forward_length":              uint32(s.FeedForward),
		"llama.attention.head_count":             uint32(s.Heads),
		"llama.attention.head_count_kv":          uint32(s.Heads),
		"llama.rope.dimension_count":             uint32(s.Embedding / s.Heads),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.vocab_size":                       uint32(s.Vocab),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.tokens":                  tokens,
		"tokenizer.ggml.scores":                  scores,
		"tokenizer.ggml.token_type":              types,
		"tokenizer.ggml.unknown_token_id":        uint32(0),
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
	}
}

// vocabulary is a SentencePiece vocabulary of n tokens: the three control
// tokens, the 256 byte tokens, then printable characters and their
// combinations, with and without the word-start mark, so any text
// tokenizes.
func vocabulary(n int) ([]string, []float32, []int32) {
	const (
		normal  = 1
		unknown = 2
		control = 3
		byteTok = 6
	)
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{unknown, control, control}
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, byteTok)
	}
	seen := map[string]bool{}
	add := func(t string) {
		if len(tokens) < n && !seen[t] {
			seen[t] = true
			tokens = append(tokens, t)
			types = append(types, normal)
		}
	}
	var chars []string
	for c := ' ' + 1; c < 127; c++ {
		chars = append(chars, string(c))
	}
	for _, c := range chars {
		add(c)
		add("▁" + c)
	}
	letters := "etaoinshrdlucmfwypvbgkjqxz"
	for _, a := range letters {
		for _, b := range letters {
			add(string(a) + string(b))
			add("▁" + string(a) + string(b))
		}
	}
	for _, a := range letters {
		for _, b := range letters {
			for _, c := range letters {
				add(string(a) + string(b) + string(c))
				add("▁" + string(a) + string(b) + string(c))
			}
		}
	}
	for i := 0; len(tokens) < n; i++ {
		add(fmt.Sprintf("▁w%d", i))
	}
	scores := make([]float32, n)
	for i := range scores {
		scores[i] = -float32(i)
	}
	return tokens, scores, types
}

// tensors lists the Llama's weights: norms in F32 (ones), every matrix of
// kind with random values. The output rows of the control and byte tokens
// are zero, so that greedy decoding never ends a generation early nor
// produces a piece of a character, which a caller would see late.
func tensors(s Shape, kind ggml.TensorType, seed uint64) []*ggml.Tensor {
	e, f, v := uint64(s.Embedding), uint64(s.FeedForward), uint64(s.Vocab)
	n := uint64(0)
	matrix := func(name string, shape ...uint64) *ggml.Tensor {
		n++
		return &ggml.Tensor{Name: name, Kind: uint32(kind), Shape: shape, WriterTo: &random{kind: kind, seed: seed + n, elements: shape[0] * shape[1]}}
	}
	norm := func(name string) *ggml.Tensor {
		return &ggml.Tensor{Name: name, Kind: uint32(ggml.TensorTypeF32), Shape: []uint64{e}, WriterTo: ones(e)}
	}
	out := matrix("output.weight", e, v)
	out.WriterTo.(*random).zero = (3 + 256) * e
	ts := []*ggml.Tensor{matrix("token_embd.weight", e, v), out, norm("output_norm.weight")}
	for i := range s.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			norm(p+"attn_norm.weight"), norm(p+"ffn_norm.weight"),
			matrix(p+"attn_q.weight", e, e), matrix(p+"attn_k.weight", e, e),
			matrix(p+"attn_v.weight", e, e), matrix(p+"attn_output.weight", e, e),
			matrix(p+"ffn_gate.weight", e, f), matrix(p+"ffn_up.weight", e, f),
			matrix(p+"ffn_down.weight", f, e))
	}
	return ts
}

type ones uint64

func (n ones) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 4*n)
	for i := range int(n) {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(1))
	}
	written, err := w.Write(buf)
	return int64(written), err
}

// random writes elements random weights of kind (about N(0, 0.02)), the
// first zero of them zero.
type random struct {
	kind     ggml.TensorType
	seed     uint64
	elements uint64
	zero     uint64
}

func (r *random) WriteTo(w io.Writer) (int64, error) {
	rng := rand.New(rand.NewPCG(r.seed, 0x6c6c616d61))
	bw := bufio.NewWriterSize(w, 1<<20)
	var written int64
	put := func(b []byte) {
		n, _ := bw.Write(b)
		written += int64(n)
	}
	switch r.kind {
	case ggml.TensorTypeF16:
		var b [2]byte
		for i := range r.elements {
			h := uint16(0)
			if i >= r.zero {
				h = f16(float32(rng.NormFloat64() * 0.02))
			}
			binary.LittleEndian.PutUint16(b[:], h)
			put(b[:])
		}
	case ggml.TensorTypeQ8_0:
		// A block: an F16 scale, then 32 signed bytes.
		var b [34]byte
		for i := uint64(0); i < r.elements; i += 32 {
			clear(b[:])
			if i >= r.zero {
				binary.LittleEndian.PutUint16(b[:], f16(0.035/127))
				for j := 2; j < 34; j += 8 {
					binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
				}
			}
			put(b[:])
		}
	}
	return written, bw.Flush()
}

// f16 is x as an IEEE half float, for the normal range that weights use;
// smaller magnitudes become zero.
func f16(x float32) uint16 {
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	exp := int((bits>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	if exp >= 31 {
		return sign | 0x7bff
	}
	return sign | uint16(exp)<<10 | uint16((bits>>13)&0x3ff)
}
