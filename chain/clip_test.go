package chain

import (
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"shorter", "abc", 5, "abc"},
		{"exact", "abcde", 5, "abcde"},
		{"longer", "abcdef", 5, "abcde..."},
		{"empty", "", 0, ""},
		{"huge", strings.Repeat("x", 1<<20), 3, "xxx..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Clip(tc.s, tc.n); got != tc.want {
				t.Fatalf("Clip(%.10q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}
