package llmworker_test

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/narrated/llmworker/internal/bridge"
	"github.com/narrated/llmworker/internal/worker"
)

// The README's flag tables must list every flag of both binaries, each
// with its environment variable, and nothing that is not a flag.
func TestReadmeFlagTables(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag name → its table row
	for _, line := range strings.Split(string(data), "\n") {
		if m := regexp.MustCompile("^\\| `-([a-z-]+)` \\|").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	seen := map[string]bool{}
	check := func(fs *flag.FlagSet) {
		fs.VisitAll(func(f *flag.Flag) {
			seen[f.Name] = true
			row, ok := rows[f.Name]
			if !ok {
				t.Errorf("README has no row for %s's -%s", fs.Name(), f.Name)
				return
			}
			if m := regexp.MustCompile(`\[\$([A-Z_]+)\]`).FindStringSubmatch(f.Usage); m != nil && !strings.Contains(row, "`"+m[1]+"`") {
				t.Errorf("README's row for -%s lacks its variable %s: %s", f.Name, m[1], row)
			}
		})
	}
	check(worker.FlagSet(&worker.Options{}))
	check(bridge.FlagSet(&bridge.Options{}))
	for name := range rows {
		if !seen[name] {
			t.Errorf("README lists -%s, which no binary has", name)
		}
	}
}
