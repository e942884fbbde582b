package cpulevel

import (
	"strings"
	"testing"
)

func features(levels ...[]string) map[string]bool {
	has := map[string]bool{}
	for _, l := range levels {
		for _, f := range l {
			has[f] = true
		}
	}
	return has
}

func TestCheck(t *testing.T) {
	v2, v3, v4 := levels[0].features, levels[1].features, levels[2].features
	noAVX2 := features(v2, v3)
	delete(noAVX2, "AVX2")
	for _, c := range []struct {
		name    string
		march   string
		has     map[string]bool
		missing string // "" when the CPU runs the build
	}{
		{"v3 build, v3 CPU", "x86-64-v3", features(v2, v3), ""},
		{"v3 build, v4 CPU", "x86-64-v3", features(v2, v3, v4), ""},
		{"v3 build, CPU without AVX2", "x86-64-v3", noAVX2, "lacks AVX2:"},
		{"v3 build, v2 CPU", "x86-64-v3", features(v2), "lacks AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, OSXSAVE:"},
		{"v4 build, v3 CPU", "x86-64-v4", features(v2, v3), "built for x86-64-v4, but this CPU lacks AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL:"},
		{"v2 build, bare CPU", "x86-64-v2", features(), "lacks SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CX16:"},
		{"baseline build", "x86-64", features(), ""},
		{"native build", "native", features(), ""},
		{"no -march", "", features(), ""},
	} {
		err := check(c.march, c.has)
		switch {
		case c.missing == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.missing != "" && (err == nil || !strings.Contains(err.Error(), c.missing)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.missing)
		}
	}
}

func TestLevel(t *testing.T) {
	v2, v3, v4 := levels[0].features, levels[1].features, levels[2].features
	noFMA := features(v2, v3, v4)
	delete(noFMA, "FMA")
	for want, has := range map[string]map[string]bool{
		"x86-64": features(), "x86-64-v2": features(v2), "x86-64-v3": features(v2, v3),
		"x86-64-v4": features(v2, v3, v4), "x86-64-v2 ": noFMA,
	} {
		if got := level(has); got != strings.TrimSpace(want) {
			t.Errorf("level = %s, want %s", got, want)
		}
	}
}

func TestMarch(t *testing.T) {
	for flags, want := range map[string]string{
		"-O3 -march=x86-64-v3": "x86-64-v3", "-march=x86-64-v2 -O2 -march=x86-64-v4": "x86-64-v4", "-O3": "",
	} {
		if got := march(flags); got != want {
			t.Errorf("march(%q) = %q, want %q", flags, got, want)
		}
	}
}

// The test binary is built like the worker; this machine runs it.
func TestThisBuildRunsHere(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	t.Logf("built for %q; this CPU is %s", Built(), Level())
}
