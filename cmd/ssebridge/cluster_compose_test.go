package main

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/narrated/llmworker/internal/testutil"
)

// The cluster profile runs three NATS servers routed to each other, with a
// worker and a bridge that know all three and keep three replicas; without
// the profile none of it runs.
func TestComposeClusterProfile(t *testing.T) {
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	if p := loadCompose(t); slices.ContainsFunc(nodes, func(n string) bool { return p.Services[n].Name != "" }) {
		t.Fatal("the cluster's servers run without the cluster profile")
	}
	root := testutil.RepoRoot()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
		Environment: composeEnv(),
	}, loader.WithProfiles([]string{"cluster"}))
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range nodes {
		svc := service(t, p, name)
		if minor, err := strconv.Atoi(strings.TrimPrefix(svc.Image, "nats:2.")); err != nil || minor < 11 {
			t.Errorf("%s: image %s; the code needs nats 2.11 or later", name, svc.Image)
		}
		cmd := strings.Join(svc.Command, " ")
		for _, want := range []string{"--name " + name, "--cluster_name", "--cluster nats://0.0.0.0:6222",
			"nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222", "-c /etc/nats/nats-server.conf"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", name, cmd, want)
			}
		}
	}
	for _, name := range []string{"worker-cluster", "bridge-cluster"} {
		svc := service(t, p, name)
		if r := parseCommand(t, svc).Lookup("replicas").Value.String(); r != "3" {
			t.Errorf("%s: -replicas %s, want 3", name, r)
		}
		url := svc.Environment["NATS_URL"]
		for _, node := range nodes {
			if url == nil || !strings.Contains(*url, "@"+node+":4222") {
				t.Errorf("%s: NATS_URL does not name %s", name, node)
			}
			if !slices.Contains(svc.GetDependencies(), node) {
				t.Errorf("%s does not depend on %s", name, node)
			}
		}
	}
}
