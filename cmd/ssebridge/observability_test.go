package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/testutil"
	"github.com/narrated/llmworker/internal/worker"
)

// The observability profile runs Prometheus, scraping the workers' and the
// bridge's metrics where their commands serve them, and Grafana with the
// dashboard; without the profile neither runs.
func TestComposeObservabilityProfile(t *testing.T) {
	if p := loadCompose(t); p.Services["prometheus"].Name != "" || p.Services["grafana"].Name != "" {
		t.Fatal("prometheus or grafana runs without the observability profile")
	}
	root := testutil.RepoRoot()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
		Environment: composeEnv(),
	}, loader.WithProfiles([]string{"observability"}))
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	prom, grafana := service(t, p, "prometheus"), service(t, p, "grafana")
	mounts := map[string]string{} // target → source
	for _, svc := range []types.ServiceConfig{prom, grafana} {
		for _, v := range svc.Volumes {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which is missing: %v", svc.Name, v.Source, err)
			}
			mounts[v.Target] = v.Source
		}
	}

	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, mounts["/etc/prometheus/prometheus.yml"], &cfg)
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			targets = append(targets, s.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets = append(targets, fmt.Sprintf("%s:%d", n, d.Port))
			}
		}
	}
	_, workerPort, _ := net.SplitHostPort(parseCommand(t, service(t, p, "worker")).Lookup("metrics-listen").Value.String())
	_, bridgePort, _ := net.SplitHostPort(parseCommand(t, service(t, p, "bridge")).Lookup("listen").Value.String())
	for _, want := range []string{"worker:" + workerPort, "bridge:" + bridgePort} {
		if !slices.Contains(targets, want) {
			t.Errorf("prometheus scrapes %v, not %s", targets, want)
		}
	}

	var datasources struct {
		Datasources []struct{ URL string } `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(mounts["/etc/grafana/provisioning"], "datasources", "prometheus.yaml"), &datasources)
	if len(datasources.Datasources) != 1 || datasources.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("grafana's datasources %+v; want the prometheus service", datasources)
	}
	var dashboards struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(mounts["/etc/grafana/provisioning"], "dashboards", "llmworker.yaml"), &dashboards)
	dir := dashboards.Providers[0].Options.Path
	if src := mounts[dir+"/llmworker.json"]; !sameFile(src, filepath.Join(root, "deploy", "grafana", "llmworker.json")) {
		t.Errorf("grafana loads dashboards from %s, where deploy/grafana/llmworker.json is not mounted (%v)", dir, mounts)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Every query of the dashboard names metrics the binaries export: the
// worker's and the bridge's, scraped after a job ran through both.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	queries := dashboardQueries(t)
	if len(queries) < 10 {
		t.Fatalf("the dashboard has %d queries", len(queries))
	}
	for where, q := range queries {
		if err := checkQuery(q, exported); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	// The check can fail.
	if checkQuery(`rate(llmworker_no_such_thing_total[1m])`, exported) == nil || checkQuery(`up`, exported) == nil {
		t.Error("a query of no exported metric passed")
	}
}

var metricName = regexp.MustCompile(`\b(?:llmworker|llmbridge)_[a-zA-Z0-9_]+`)

// checkQuery says which metric of q is not exported, or that q names none.
func checkQuery(q string, exported map[string]bool) error {
	names := metricName.FindAllString(q, -1)
	if len(names) == 0 {
		return fmt.Errorf("%q names no llmworker or llmbridge metric", q)
	}
	for _, n := range names {
		if !exported[n] {
			return fmt.Errorf("%q names %s, which no binary exports", q, n)
		}
	}
	return nil
}

// dashboardQueries are the dashboard's panel queries and variable queries,
// by where they are.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "deploy", "grafana", "llmworker.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ RefID, Expr string }
		}
		Templating struct {
			List []struct{ Name, Definition string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("llmworker.json: %v", err)
	}
	out := map[string]string{}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			out[p.Title+" "+target.RefID] = target.Expr
		}
	}
	for _, v := range dash.Templating.List {
		out["variable "+v.Name] = v.Definition
	}
	return out
}

// exportedMetrics runs one job through a real worker and bridge and
// scrapes both: every metric family, with a histogram's series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	_, natsURL := testutil.StartNATS(t)
	reg := prometheus.NewRegistry()
	testutil.StartWorkerWith(t, natsURL, testutil.WorkerOptions{Metrics: worker.NewMetrics(reg, "stories260K", "")})
	workerMetrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(workerMetrics.Close)
	srv, err := bridge.New(bridge.Config{}, testutil.Connect(t, natsURL), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	b := httptest.NewServer(srv)
	t.Cleanup(b.Close)

	req, _ := http.NewRequest(http.MethodPost, b.URL+"/v1/jobs", strings.NewReader(`{"prompt":"Once upon a time","max_tokens":5}`))
	req.Header.Set("Accept", "text/event-stream")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := readAll(resp)
	if !strings.Contains(body, "event: end") {
		t.Fatalf("the job did not end: %s", body)
	}

	exported := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); !exported["llmworker_jobs_total"] && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the job is counted once settled, a moment after its end
		for _, url := range []string{workerMetrics.URL, b.URL + "/metrics"} {
			for name, f := range testutil.ScrapeMetrics(t, url) {
				exported[name] = true
				if f.GetType() == dto.MetricType_HISTOGRAM {
					exported[name+"_bucket"], exported[name+"_sum"], exported[name+"_count"] = true, true, true
				}
			}
		}
	}
	return exported
}

func readAll(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return string(data), err
}
