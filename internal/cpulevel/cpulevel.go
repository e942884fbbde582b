// Package cpulevel checks, as a binary starts, that the CPU has the
// instruction set its C and C++ code (llama.cpp) was compiled for. A build
// for x86-64-v3 on a CPU without AVX2 would otherwise die of SIGILL at its
// first matrix product, with no word of why.
//
// The level is read from the build itself (the -march of CGO_CFLAGS that
// `go build` records), so every way of building is checked, not only the
// Makefile's.
package cpulevel

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/cpu"
)

// levels are the x86-64 micro-architecture levels, each with the features
// it adds to the one before (as GCC's -march=x86-64-vN defines them).
var levels = []struct {
	name     string
	features []string
}{
	{"x86-64-v2", []string{"SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "CX16"}},
	{"x86-64-v3", []string{"AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE", "OSXSAVE"}},
	{"x86-64-v4", []string{"AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL"}},
}

// Built is the -march the binary's C code was compiled with, "" when the
// build did not record one.
func Built() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_CFLAGS" {
			return march(s.Value)
		}
	}
	return ""
}

// march is the value of the last -march= in flags.
func march(flags string) string {
	m := ""
	for _, f := range strings.Fields(flags) {
		if v, ok := strings.CutPrefix(f, "-march="); ok {
			m = v
		}
	}
	return m
}

// Check says whether this CPU runs what the binary was built for: nil, or
// an error naming the build's level and the features the CPU lacks.
func Check() error {
	if runtime.GOARCH != "amd64" {
		return nil
	}
	return check(Built(), hasX86)
}

func check(march string, has map[string]bool) error {
	var missing []string
	for _, l := range levels {
		for _, f := range l.features {
			if !has[f] {
				missing = append(missing, f)
			}
		}
		if l.name == march {
			if len(missing) > 0 {
				return fmt.Errorf("this binary was built for %s, but this CPU lacks %s: build it for this machine (make build picks its level; CPU=x86-64-v2 for older CPUs)",
					march, strings.Join(missing, ", "))
			}
			return nil
		}
	}
	return nil // x86-64, native or unknown: nothing the build requires beyond amd64
}

// Level is the highest x86-64 level this CPU has, "x86-64" for none.
func Level() string {
	return level(hasX86)
}

func level(has map[string]bool) string {
	best := "x86-64"
	for _, l := range levels {
		for _, f := range l.features {
			if !has[f] {
				return best
			}
		}
		best = l.name
	}
	return best
}

var hasX86 = map[string]bool{
	"SSE3": cpu.X86.HasSSE3, "SSSE3": cpu.X86.HasSSSE3, "SSE4.1": cpu.X86.HasSSE41, "SSE4.2": cpu.X86.HasSSE42,
	"POPCNT": cpu.X86.HasPOPCNT, "CX16": cpu.X86.HasCX16,
	"AVX": cpu.X86.HasAVX, "AVX2": cpu.X86.HasAVX2, "BMI1": cpu.X86.HasBMI1, "BMI2": cpu.X86.HasBMI2,
	"F16C": cpu.X86.HasF16C, "FMA": cpu.X86.HasFMA, "LZCNT": cpu.X86.HasLZCNT, "MOVBE": cpu.X86.HasMOVBE,
	"OSXSAVE": cpu.X86.HasOSXSAVE,
	"AVX512F": cpu.X86.HasAVX512F, "AVX512BW": cpu.X86.HasAVX512BW, "AVX512CD": cpu.X86.HasAVX512CD,
	"AVX512DQ": cpu.X86.HasAVX512DQ, "AVX512VL": cpu.X86.HasAVX512VL,
}
