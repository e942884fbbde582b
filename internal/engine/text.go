package engine

import (
	"strings"
	"unicode/utf8"
)

// textBuffer turns a sequence's token pieces into text a caller may see:
// whole UTF-8 only (byte-fallback tokens split characters), and nothing that
// could still turn out to be part of a stop sequence, which can span pieces.
type textBuffer struct {
	stops   []string
	pending string
}

// add takes the next piece. It returns the text that is safe to show now
// and, when a stop sequence has appeared, which one: the text before it is
// returned and the rest is dropped.
func (b *textBuffer) add(piece string) (text, stop string) {
	b.pending += piece
	if at, s := firstStop(b.pending, b.stops); s != "" {
		text = strings.ToValidUTF8(b.pending[:at], "\uFFFD")
		b.pending = ""
		return text, s
	}
	cut := len(b.pending) - max(stopPrefixLen(b.pending, b.stops), partialRuneLen(b.pending))
	text, b.pending = b.pending[:cut], b.pending[cut:]
	return strings.ToValidUTF8(text, "\uFFFD"), ""
}

// flush returns what is still held back, when no more pieces will come.
func (b *textBuffer) flush() string {
	text := strings.ToValidUTF8(b.pending, "\uFFFD")
	b.pending = ""
	return text
}

// firstStop finds the earliest stop sequence in s.
func firstStop(s string, stops []string) (at int, stop string) {
	at = -1
	for _, st := range stops {
		if i := strings.Index(s, st); i >= 0 && (at < 0 || i < at) {
			at, stop = i, st
		}
	}
	return at, stop
}

// stopPrefixLen is the length of the longest suffix of s that begins some
// stop sequence.
func stopPrefixLen(s string, stops []string) int {
	longest := 0
	for _, st := range stops {
		for n := min(len(st)-1, len(s)); n > longest; n-- {
			if strings.HasSuffix(s, st[:n]) {
				longest = n
				break
			}
		}
	}
	return longest
}

// partialRuneLen is the length of an unfinished UTF-8 character at the end
// of s: bytes that the next piece may complete.
func partialRuneLen(s string) int {
	for n := 1; n <= min(utf8.UTFMax-1, len(s)); n++ {
		c := s[len(s)-n]
		if c < utf8.RuneSelf {
			return 0 // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if utf8.FullRuneInString(s[len(s)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}
