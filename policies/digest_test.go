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

// A job.flow or job.list names its shipment's digest once: its blake3, or
// its sha256 as entries before BLAKE3 did.
func TestOneShipDigest(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name           string
		blake3, sha256 string
		want           bool
	}{
		{"blake3", good, "", true},
		{"sha256, as before BLAKE3", "", good, true},
		{"neither", "", "", false},
		{"both", good, good, false},
		{"blake3 in upper case", strings.ToUpper(good), "", false},
		{"sha256 short", "", good[:63], false},
		{"blake3 and a stray sha256", good, " ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := oneShipDigest(tc.blake3, tc.sha256); got != tc.want {
				t.Fatalf("oneShipDigest(%q, %q) = %v, want %v", tc.blake3, tc.sha256, got, tc.want)
			}
		})
	}
}
