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
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// Docker cannot run here, so compose.yaml is checked by loading it with the
// compose-spec loader and parsing each command with the flag set of the
// binary it names.

// composeSecrets are the secrets compose.yaml requires, as an operator
// sets them.
var composeSecrets = map[string]string{
	"NATS_ORCHESTRATOR_PASSWORD": "orchestrator-secret",
	"NATS_WORKER_PASSWORD":       "worker-secret",
	"NATS_BRIDGE_PASSWORD":       "bridge-secret",
	"NATS_OBSERVER_PASSWORD":     "observer-secret",
	"BRIDGE_AUTH_TOKEN":          "bridge-token",
}

// composeEnv is a new environment holding them (the loader writes into
// the one it is given).
func composeEnv() types.Mapping {
	env := types.Mapping{}
	for k, v := range composeSecrets {
		env[k] = v
	}
	return env
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := testutil.RepoRoot()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
		Environment: composeEnv(),
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
	if !strings.HasPrefix(nats.Image, "nats:") || !slices.Equal(nats.Command, []string{"-c", "/etc/nats/nats-server.conf"}) {
		t.Fatalf("nats: image %q command %q; want the official image with the shipped configuration", nats.Image, nats.Command)
	}
	if i := slices.IndexFunc(nats.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/etc/nats/nats-server.conf" }); i < 0 ||
		!sameFile(nats.Volumes[i].Source, filepath.Join(root, "deploy", "nats", "nats-server.conf")) {
		t.Errorf("nats does not mount deploy/nats/nats-server.conf: %v", nats.Volumes)
	}
	for _, role := range []string{"ORCHESTRATOR", "WORKER", "BRIDGE", "OBSERVER"} {
		name := "NATS_" + role + "_PASSWORD"
		if v := nats.Environment[name]; v == nil || *v != composeSecrets[name] {
			t.Errorf("nats: %s is not passed from the environment", name)
		}
	}
	for _, pc := range nats.Ports {
		if pc.Target != 4222 {
			t.Errorf("nats publishes port %d; only the client port 4222 may be published (not the monitor)", pc.Target)
		}
	}
	if !slices.ContainsFunc(nats.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == 4222 }) {
		t.Fatal("nats does not expose its client port 4222")
	}

	for name, user := range map[string]string{"worker": "worker", "bridge": "bridge"} {
		svc := service(t, p, name)
		fs := parseCommand(t, svc)
		binary := svc.Command[0]
		if _, err := os.Stat(filepath.Join(root, "cmd", binary, "main.go")); err != nil {
			t.Errorf("%s runs %s, which is not a command of this repository: %v", name, binary, err)
		}
		if svc.Build == nil || !strings.Contains(string(dockerfile), "/src/bin/"+binary) {
			t.Errorf("%s: not built from the Dockerfile, or the Dockerfile does not install %s", name, binary)
		}
		// Its NATS URL (and password) comes from the environment, never
		// the command line, and names its own role's user.
		if fs.Lookup("nats").Value.String() != fs.Lookup("nats").DefValue {
			t.Errorf("%s: -nats on the command line, where any user of the host can read its password", name)
		}
		env := svc.Environment["NATS_URL"]
		if env == nil {
			t.Fatalf("%s: no NATS_URL", name)
		}
		u, err := url.Parse(*env)
		pass, _ := u.User.Password()
		if err != nil || u.Hostname() != "nats" || u.Port() != "4222" || u.User.Username() != user ||
			pass != composeSecrets["NATS_"+strings.ToUpper(user)+"_PASSWORD"] {
			t.Errorf("%s: NATS_URL %q; want user %s with its password at the nats service's client port", name, natsconn.Redact(*env), user)
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
	if token := b.Environment["BRIDGE_AUTH_TOKEN"]; token == nil || *token != composeSecrets["BRIDGE_AUTH_TOKEN"] {
		t.Errorf("bridge: BRIDGE_AUTH_TOKEN is not set from the environment: the bridge would listen on all interfaces with no token")
	}
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

// compose refuses to start while a secret is unset or empty: a NATS user
// with an empty password would let anyone in as that role.
func TestComposeRequiresEverySecret(t *testing.T) {
	root := testutil.RepoRoot()
	for name := range composeSecrets {
		for _, value := range []string{"", "unset"} {
			env := composeEnv()
			if value == "unset" {
				delete(env, name)
			} else {
				env[name] = value
			}
			_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
				WorkingDir:  root,
				ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
				Environment: env,
			})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s %q: compose.yaml loads (%v); want it refused", name, value, err)
			}
		}
	}
}
