package main

import (
	"context"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// Docker cannot run here, so compose.yaml is checked by loading it with the
// compose-spec loader and parsing each command with the flag set of the
// binary it names.

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := testutil.RepoRoot()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

// flagSets are the real flag definitions of the binaries compose.yaml runs.
var flagSets = map[string]func() *flag.FlagSet{
	"worker":    func() *flag.FlagSet { return worker.FlagSet(&worker.Options{}) },
	"ssebridge": func() *flag.FlagSet { return bridge.FlagSet(&bridge.Options{}) },
}

// parseCommand parses a service's command with its binary's flags.
func parseCommand(t *testing.T, svc types.ServiceConfig) *flag.FlagSet {
	t.Helper()
	if len(svc.Command) == 0 {
		t.Fatalf("service %s has no command", svc.Name)
	}
	newFlags, ok := flagSets[svc.Command[0]]
	if !ok {
		t.Fatalf("service %s runs %q, which is not one of the binaries %v", svc.Name, svc.Command[0], []string{"worker", "ssebridge"})
	}
	fs := newFlags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(svc.Command[1:]); err != nil {
		t.Fatalf("service %s: %v: %q", svc.Name, err, svc.Command)
	}
	if fs.NArg() > 0 {
		t.Fatalf("service %s: stray arguments %q", svc.Name, fs.Args())
	}
	return fs
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	svc, ok := p.Services[name]
	if !ok {
		t.Fatalf("compose.yaml has no service %q", name)
	}
	return svc
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	root := testutil.RepoRoot()
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}

	nats := service(t, p, "nats")
	if !strings.HasPrefix(nats.Image, "nats:") || !slices.Contains(nats.Command, "-js") {
		t.Fatalf("nats: image %q command %q; want the official image with -js", nats.Image, nats.Command)
	}
	if !slices.ContainsFunc(nats.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == 4222 }) {
		t.Fatal("nats does not expose its client port 4222")
	}

	for _, name := range []string{"worker", "bridge"} {
		svc := service(t, p, name)
		fs := parseCommand(t, svc)
		binary := svc.Command[0]
		if _, err := os.Stat(filepath.Join(root, "cmd", binary, "main.go")); err != nil {
			t.Errorf("%s runs %s, which is not a command of this repository: %v", name, binary, err)
		}
		if svc.Build == nil || !strings.Contains(string(dockerfile), "/src/bin/"+binary) {
			t.Errorf("%s: not built from the Dockerfile, or the Dockerfile does not install %s", name, binary)
		}
		u, err := url.Parse(fs.Lookup("nats").Value.String())
		if err != nil || u.Hostname() != "nats" || u.Port() != "4222" {
			t.Errorf("%s: -nats %q; want the nats service's client port", name, fs.Lookup("nats").Value)
		}
		if !slices.Contains(svc.GetDependencies(), "nats") {
			t.Errorf("%s does not depend on nats", name)
		}
	}

	w := service(t, p, "worker")
	model := parseCommand(t, w).Lookup("model").Value.String()
	i := slices.IndexFunc(w.Volumes, func(v types.ServiceVolumeConfig) bool {
		return strings.HasPrefix(model, strings.TrimSuffix(v.Target, "/")+"/")
	})
	if i < 0 {
		t.Fatalf("worker: -model %s is on none of its volumes %v", model, w.Volumes)
	}
	vol := w.Volumes[i]
	local := filepath.Join(vol.Source, strings.TrimPrefix(model, vol.Target))
	if want := testutil.ModelPath(t); !sameFile(local, want) {
		t.Errorf("worker: the default model volume gives %s; want the shared model %s", local, want)
	}

	b := service(t, p, "bridge")
	host, port, err := net.SplitHostPort(parseCommand(t, b).Lookup("listen").Value.String())
	if err != nil || host != "0.0.0.0" {
		t.Fatalf("bridge: -listen %s:%s (%v); want all interfaces, so the published port reaches it", host, port, err)
	}
	if !slices.ContainsFunc(b.Ports, func(pc types.ServicePortConfig) bool {
		return strconv.Itoa(int(pc.Target)) == port && pc.Published != ""
	}) {
		t.Fatalf("bridge listens on %s, which is not published in %v", port, b.Ports)
	}
}

func TestDockerfileInstallsTheBuildPackages(t *testing.T) {
	root := testutil.RepoRoot()
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var packages []string
	for line := range strings.Lines(string(makefile)) {
		if v, ok := strings.CutPrefix(line, "BUILD_PACKAGES :="); ok {
			packages = strings.Fields(v)
		}
	}
	if len(packages) == 0 {
		t.Fatal("the Makefile names no BUILD_PACKAGES")
	}
	for _, p := range packages {
		if !strings.Contains(string(dockerfile), " "+p) {
			t.Errorf("the Dockerfile does not install %s, which the build needs", p)
		}
	}
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

func TestComposeCommandsFailOnUnknownFlags(t *testing.T) {
	// The check above can fail: a command with a flag the binary lacks is refused.
	for binary, newFlags := range flagSets {
		fs := newFlags()
		fs.SetOutput(io.Discard)
		if err := fs.Parse([]string{"-no-such-flag", "x"}); err == nil {
			t.Errorf("%s's flags took an unknown flag", binary)
		}
	}
}
