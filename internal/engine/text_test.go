package engine

import (
	"strings"
	"testing"
)

func TestTextBuffer(t *testing.T) {
	euro := "€" // e2 82 ac
	tests := []struct {
		name   string
		stops  []string
		pieces []string
		want   []string // text returned by each add, then by flush
		stop   string
	}{
		{"plain", nil, []string{"Once", " upon"}, []string{"Once", " upon", ""}, ""},
		{"utf8 split over byte tokens", nil,
			[]string{"a" + euro[:1], euro[1:2], euro[2:] + "b"}, []string{"a", "", euro + "b", ""}, ""},
		{"unfinished character at the end becomes U+FFFD", nil,
			[]string{"x" + euro[:2]}, []string{"x", "\uFFFD"}, ""},
		{"stop inside one piece", []string{"END"}, []string{"the END of it"}, []string{"the "}, "END"},
		{"stop across pieces", []string{"\n\n"}, []string{"one\n", "\ntwo"}, []string{"one", ""}, "\n\n"},
		{"held prefix released when it is no stop", []string{"STOP"}, []string{"ST", "ay"}, []string{"", "STay", ""}, ""},
		{"held prefix flushed at the end", []string{"STOP"}, []string{"a ST"}, []string{"a ", "ST"}, ""},
		{"earliest of several stops", []string{"b", "a"}, []string{"xab"}, []string{"x"}, "a"},
		{"stop that is a multibyte character", []string{euro}, []string{"5" + euro[:1], euro[1:]}, []string{"5", "5"[:0]}, euro},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := textBuffer{stops: tt.stops}
			var got []string
			var stop string
			for _, p := range tt.pieces {
				text, s := b.add(p)
				got = append(got, text)
				if s != "" {
					stop = s
					break
				}
			}
			if stop == "" {
				got = append(got, b.flush())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || stop != tt.stop {
				t.Errorf("got %q stop %q; want %q stop %q", got, stop, tt.want, tt.stop)
			}
		})
	}
}
