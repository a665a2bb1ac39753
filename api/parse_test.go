package api

import (
	"bytes"
	"testing"
)

func FuzzParseRange(f *testing.F) {
	f.Add("0", "10")
	f.Add("18446744073709551615", "")
	f.Add("-1", "x")
	f.Fuzz(func(t *testing.T, a, b string) {
		s, e, err := parseRange(a, b, 1000)
		if err == nil && (e < s || e-s > 1000) {
			t.Fatalf("range [%d,%d) from %q %q", s, e, a, b)
		}
		_, _, _ = parseProofQuery("index", a, "size", b)
	})
}

func FuzzParseAppendRequest(f *testing.F) {
	f.Add([]byte(`{"entry":"RFNFMQ=="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := parseAppendRequest(bytes.NewReader(b))
		if err == nil && len(raw) == 0 {
			t.Fatal("empty entry accepted")
		}
	})
}
