package policies

import (
	"strings"
	"testing"
)

func TestIsSHA256Hex(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name, s string
		want    bool
	}{
		{"digest", good, true},
		{"empty", "", false},
		{"short", good[:63], false},
		{"long", good + "0", false},
		{"uppercase", strings.ToUpper(good), false},
		{"not hex", good[:63] + "g", false},
		{"multibyte", good[:62] + "é", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsSHA256Hex(tc.s); got != tc.want {
				t.Fatalf("IsSHA256Hex(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}
