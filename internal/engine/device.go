package engine

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ollama/ollama/llama"
	"golang.org/x/sys/unix"
)

// DeviceInfo is what llama.cpp found on this machine.
type DeviceInfo struct {
	// CPU lists the CPU backend's features, e.g. "AVX2 FMA F16C".
	CPU string
	// GPUs names each GPU backend device; empty on a CPU-only build.
	GPUs []string
}

func (d DeviceInfo) String() string {
	gpus := "no GPU"
	if len(d.GPUs) > 0 {
		gpus = "GPU " + strings.Join(d.GPUs, ", ")
	}
	return fmt.Sprintf("CPU %s; %s", d.CPU, gpus)
}

// Devices starts llama.cpp's backends (once) and reports what they found.
//
// It changes the process, as the llama package requires: it sets
// OLLAMA_LIBRARY_PATH when unset (ggml finds its backends by it), and it
// makes slog's default logger a text logger on stderr at warning level
// (the llama package lets through the llama.cpp log lines that slog's
// default logger takes, and writes them to stderr, never stdout). So a
// binary calls it once at start-up, before it starts other work, as
// cmd/worker does; Load calls it for callers that did not.
var Devices = sync.OnceValue(func() DeviceInfo {
	// ggml looks for backend libraries beside ../lib/ollama and warns for
	// each it cannot find; this binary links its CPU backend statically, so
	// point the search at the executable's own folder.
	if _, set := os.LookupEnv("OLLAMA_LIBRARY_PATH"); !set {
		if exe, err := os.Executable(); err == nil {
			os.Setenv("OLLAMA_LIBRARY_PATH", filepath.Dir(exe))
		}
	}
	capture := &systemCapture{next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})}
	slog.SetDefault(slog.New(capture))
	llama.BackendInit()
	slog.SetDefault(slog.New(capture.next))

	info := DeviceInfo{CPU: capture.cpuFeatures()}
	for _, d := range llama.EnumerateGPUs() {
		info.GPUs = append(info.GPUs, d.Library+" "+d.ID)
	}
	return info
})

// systemCapture keeps the "system" record that ggml logs as its backends
// come up: the only place the Go bindings tell the CPU features.
type systemCapture struct {
	next     slog.Handler
	mu       sync.Mutex
	features []string
}

func (h *systemCapture) Enabled(ctx context.Context, l slog.Level) bool {
	return true
}

func (h *systemCapture) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "system" {
		if h.next.Enabled(ctx, r.Level) {
			return h.next.Handle(ctx, r)
		}
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		h.collect("", a)
		return true
	})
	return nil
}

func (h *systemCapture) collect(prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, sub := range v.Group() {
			h.collect(prefix, sub)
		}
		return
	}
	// CPU.0.AVX2=1 → AVX2
	if strings.HasPrefix(prefix, "CPU.") && v.String() == "1" {
		h.features = append(h.features, a.Key)
	}
}

func (h *systemCapture) cpuFeatures() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.features) == 0 {
		return "(no features reported)"
	}
	return strings.Join(h.features, " ")
}

func (h *systemCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *systemCapture) WithGroup(string) slog.Handler      { return h }

// stderrCaptured serialises captureStderr: a process has one stderr.
var stderrCaptured sync.Mutex

// captureStderr runs fn while keeping the last lines written to stderr,
// and still passes them on: the Go bindings' load errors hide the reason,
// which llama.cpp only logs. It redirects the file descriptor, never the
// os.Stderr variable, so no Go code races on it; a line that another part
// of the process writes meanwhile passes through as well.
func captureStderr(fn func()) string {
	stderrCaptured.Lock()
	defer stderrCaptured.Unlock()
	r, w, err := os.Pipe()
	if err != nil {
		fn()
		return "see llama.cpp's log on stderr"
	}
	defer r.Close()
	saved, err := unix.Dup(2)
	if err == nil {
		if err = unix.Dup2(int(w.Fd()), 2); err != nil {
			unix.Close(saved)
		}
	}
	if err != nil {
		w.Close()
		fn()
		return "see llama.cpp's log on stderr"
	}
	orig := os.NewFile(uintptr(saved), "stderr")
	defer orig.Close()
	var last []string
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(orig, line)
			if strings.TrimSpace(line) != "" {
				last = append(last, strings.TrimSpace(line))
				if len(last) > 3 {
					last = last[1:]
				}
			}
		}
	}()
	fn()
	unix.Dup2(saved, 2) // the pipe's last writer is w now
	w.Close()
	<-copied
	if len(last) == 0 {
		return "llama.cpp gave no reason"
	}
	return strings.Join(last, "; ")
}
