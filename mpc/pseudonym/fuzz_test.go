package pseudonym

import (
	"bytes"
	"testing"
)

// The parsers of what crosses the network (requests, partials) and of the
// share file: whatever they accept marshals back to the same bytes.

func FuzzParseRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		r.raw = nil
		if out, _ := r.MarshalBinary(); !bytes.Equal(out, b) {
			t.Fatal("request does not round-trip")
		}
	})
}

func FuzzParsePartial(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePartial(b)
		if err != nil {
			return
		}
		if out, _ := p.MarshalBinary(); !bytes.Equal(out, b) {
			t.Fatal("partial does not round-trip")
		}
	})
}

func FuzzParseKeyShare(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseKeyShare(b)
		if err != nil {
			return
		}
		if out, _ := s.MarshalBinary(); !bytes.Equal(out, b) {
			t.Fatal("key share does not round-trip")
		}
	})
}
