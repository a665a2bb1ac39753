package sandbox

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestCheckResult(t *testing.T) {
	res := Result{Job: "job-3", Columns: []string{"region", "n"}, Rows: [][]any{{"north", 12.0}}, EpsilonSpent: 0.5}
	if err := res.Seal(); err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(res)
	committed := res.ResultSHA256
	tampered := res
	tampered.Rows = [][]any{{"north", 13.0}}
	changed, _ := json.Marshal(tampered)
	relabelled := res
	relabelled.ResultSHA256 = "00" + committed[2:]
	wrongClaim, _ := json.Marshal(relabelled)
	for _, tc := range []struct {
		name      string
		raw       []byte
		committed string
		ok        bool
	}{
		{"as sealed", good, committed, true},
		{"a value changed", changed, committed, false},
		{"another committed hash", good, "00" + committed[2:], false},
		{"the embedded hash changed", wrongClaim, committed, false},
		{"not JSON", []byte("{"), committed, false},
		{"empty", nil, committed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckResult(tc.raw, tc.committed)
			if tc.ok {
				if err != nil || got.Job != "job-3" || got.ResultSHA256 != committed {
					t.Fatalf("CheckResult = %+v, %v; want the result", got, err)
				}
				return
			}
			if !errors.Is(err, ErrResultHash) {
				t.Fatalf("CheckResult err = %v, want ErrResultHash", err)
			}
		})
	}
}

// A delivered result is untrusted: CheckResult accepts only bytes that
// hash to the committed hash, and what it accepts, sealed again, still
// does (parse -> marshal keeps the hash).
func FuzzCheckResult(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzCheckResult (a sealed result and its hash).
	f.Fuzz(func(t *testing.T, raw []byte, committed string) {
		res, err := CheckResult(raw, committed)
		if err != nil {
			if !errors.Is(err, ErrResultHash) {
				t.Fatalf("err %v is not ErrResultHash", err)
			}
			return
		}
		again, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CheckResult(again, committed); err != nil {
			t.Fatalf("an accepted result, marshalled again, is refused: %s", again)
		}
	})
}
