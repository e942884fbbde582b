package flagenv

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	env := map[string]string{"name": "NAME", "count": "COUNT"}
	vars := map[string]string{"NAME": "from-env", "COUNT": "7"}
	tests := []struct {
		args  []string
		name  string
		count int
		err   string
	}{
		{nil, "from-env", 7, ""},
		{[]string{"-name", "from-flag"}, "from-flag", 7, ""},
		{[]string{"-count", "3"}, "from-env", 3, ""},
		{[]string{"stray"}, "", 0, "unexpected arguments"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		name := fs.String("name", "default", "")
		count := fs.Int("count", 1, "")
		err := Parse(fs, tt.args, env, func(k string) string { return vars[k] })
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || *name != tt.name || *count != tt.count {
			t.Errorf("%v: name %q count %d err %v", tt.args, *name, *count, err)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("count", 1, "how many")
	err := Parse(fs, nil, env, func(k string) string { return map[string]string{"COUNT": "lots"}[k] })
	if err == nil || !strings.Contains(err.Error(), "$COUNT") {
		t.Errorf("a bad variable gave %v, want an error naming $COUNT", err)
	}
	Document(fs, env)
	if u := fs.Lookup("count").Usage; u != "how many [$COUNT]" {
		t.Errorf("usage %q", u)
	}
}
