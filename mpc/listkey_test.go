package mpc

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

func TestListKeyRoundTrip(t *testing.T) {
	k, err := NewListKey()
	if err != nil {
		t.Fatal(err)
	}
	jobKey := make([]byte, 32)
	rand.Read(jobKey)
	from := policies.Address{1, 2, 3}
	sealed, err := SealListKey("job-7", "applicants", from, k.Public(), jobKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open("job-7", "applicants", from, sealed)
	if err != nil || !bytes.Equal(got, jobKey) {
		t.Fatalf("open: %x, %v", got, err)
	}
	other, _ := NewListKey()
	for name, open := range map[string]func() ([]byte, error){
		"another job":  func() ([]byte, error) { return k.Open("job-8", "applicants", from, sealed) },
		"another list": func() ([]byte, error) { return k.Open("job-7", "customers", from, sealed) },
		"another node": func() ([]byte, error) { return k.Open("job-7", "applicants", policies.Address{9}, sealed) },
		"another key":  func() ([]byte, error) { return other.Open("job-7", "applicants", from, sealed) },
		"truncated":    func() ([]byte, error) { return k.Open("job-7", "applicants", from, sealed[:len(sealed)-1]) },
		"short":        func() ([]byte, error) { return k.Open("job-7", "applicants", from, sealed[:10]) },
	} {
		t.Run(name, func(t *testing.T) {
			if b, err := open(); err == nil {
				t.Fatalf("opened to %x", b)
			}
		})
	}
	if _, err := SealListKey("job-7", "applicants", from, []byte{1, 2}, jobKey); err == nil {
		t.Fatal("sealed to a 2-byte public key")
	}
}
