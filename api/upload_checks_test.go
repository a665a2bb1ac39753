package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// An upload that could never be registered (a bad or taken name, a bad
// schema, no permission) is refused before the node reads any of it: a
// client sending "Expect: 100-continue", as sandboxctl does, sends none.
func TestUploadRefusedBeforeItsData(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil) // tax2025 is taken
	data := apitest.TaxCSV(5000)
	sum := sha256.Sum256(data)
	schema := base64.RawURLEncoding.EncodeToString(apitest.TaxSchema)
	for _, tc := range []struct {
		name, who, query string
		status           int
		code             string
	}{
		{"bad name", "agency1", "dataset=" + url.QueryEscape("Bad Name") + "&schema=" + schema, http.StatusBadRequest, "bad-name"},
		{"taken name", "agency1", "dataset=tax2025&schema=" + schema, http.StatusConflict, "conflict"},
		{"bad schema", "agency1", "dataset=taxnew&schema=" + base64.RawURLEncoding.EncodeToString([]byte(`{"columns":[]}`)), http.StatusBadRequest, "bad-schema"},
		{"no permission", "bank", "dataset=taxnew&schema=" + schema, http.StatusForbidden, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{r: bytes.NewReader(data)}
			req, _ := http.NewRequest("POST", f.Srv[0].URL+"/v1/uploads?"+tc.query, body)
			req.ContentLength = int64(len(data))
			req.Header.Set("Content-Type", "text/csv")
			req.Header.Set("Expect", "100-continue")
			k := f.Keys[tc.who]
			if err := audit.SignStreamedRequest(req, sum[:], k.Ed25519(), k.Address().String()); err != nil {
				t.Fatal(err)
			}
			code, p := apitest.Send(t, req, nil)
			if code != tc.status || p.Code != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", code, p.Code, p.Detail, tc.status, tc.code)
			}
			if n := body.n.Load(); n != 0 {
				t.Fatalf("the client sent %d bytes of data for a refused upload", n)
			}
		})
	}
	// A free, valid name goes through, and registers.
	req, _ := http.NewRequest("POST", f.Srv[0].URL+"/v1/uploads?dataset=taxnew&schema="+schema, bytes.NewReader(data))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Expect", "100-continue")
	k := f.Keys["agency1"]
	if err := audit.SignStreamedRequest(req, sum[:], k.Ed25519(), k.Address().String()); err != nil {
		t.Fatal(err)
	}
	if code, p := apitest.Send(t, req, nil); code != http.StatusCreated {
		t.Fatalf("upload under a free name: %d %s %s", code, p.Code, p.Detail)
	}
}

// A registration the ledger refuses for good discards its staged upload
// (here: an upload staged without a name, then registered under one the
// state machine refuses); registering it again then needs a new upload.
func TestRefusedRegistrationLeavesNothingStaged(t *testing.T) {
	f := apitest.New(t)
	code, up, p := f.Upload(t, "agency1", 0, apitest.TaxSchema, apitest.TaxCSV(300))
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %s %s", code, p.Code, p.Detail)
	}
	doc := func(name string) map[string]any {
		return map[string]any{"name": name, "schema": json.RawMessage(apitest.TaxSchema), "sha256": up.SHA256, "rows": up.Rows}
	}
	if code, p := f.Do(t, "agency1", 0, "POST", "/v1/datasets", doc("Bad Name"), nil); (code != http.StatusBadRequest && code != http.StatusUnprocessableEntity) || !strings.Contains(p.Detail, "must match") {
		t.Fatalf("bad name: %d %s %s", code, p.Code, p.Detail)
	}
	if code, p := f.Do(t, "agency1", 0, "POST", "/v1/datasets", doc("fine_name"), nil); code != http.StatusConflict || p.Code != "no-upload" {
		t.Fatalf("the refused upload stayed staged: %d %s %s", code, p.Code, p.Detail)
	}
}
