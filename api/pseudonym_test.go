package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// apiTransport is pseudonym.Transport over the signed API, as who on
// node i (what sandboxctl does).
type apiTransport struct {
	t    *testing.T
	f    *apitest.Consortium
	who  string
	node int
}

func (a apiTransport) Commit(_ context.Context, doc policies.PseudonymBatchDoc) (string, error) {
	var r BatchResponse
	if code, p := a.f.Do(a.t, a.who, a.node, "POST", "/v1/pseudonyms/batches", doc, &r); code != http.StatusCreated {
		return "", fmt.Errorf("%d %s: %s", code, p.Code, p.Detail)
	}
	return r.Batch, nil
}

func (a apiTransport) Evaluate(_ context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	var r EvaluateResponse
	body := EvaluateRequest{Request: req, Need: need, Exclude: exclude}
	if code, p := a.f.Do(a.t, a.who, a.node, "POST", "/v1/pseudonyms/batches/"+batch+"/evaluate", body, &r); code != http.StatusOK {
		return nil, fmt.Errorf("%d %s: %s", code, p.Code, p.Detail)
	}
	return r.Partials, nil
}

var consortiumSchema = []byte(`{"columns": [
  {"name": "person_id", "type": "string", "class": "identifier", "pseudonym": "consortium"},
  {"name": "age", "type": "int", "class": "quasi_identifier", "generalize": {"band": 10}},
  {"name": "region", "type": "string", "class": "public"},
  {"name": "income", "type": "float", "class": "sensitive", "bounds": [0, 1000000]}]}`)

// The pseudonym endpoints end to end on a 3-node consortium: the admin's
// ceremony, an agency's upload pseudonymised as it streams, an
// enterprise's list for its pending job (bounded by the policy), and the
// refusals on the way.
func TestPseudonymEndpoints(t *testing.T) {
	f := apitest.NewWith(t, apitest.Options{Pseudonyms: true})
	ctx := t.Context()
	if code, _ := f.Do(t, "auditor", 0, "GET", "/v1/pseudonyms", nil, nil); code != http.StatusNotFound {
		t.Fatalf("status before the ceremony: %d", code)
	}
	upload := func(who string, node int, query string) (int, UploadResponse, Problem) {
		csv := apitest.TaxCSV(300)
		req, _ := http.NewRequest("POST", f.Srv[node].URL+"/v1/uploads?schema="+base64.RawURLEncoding.EncodeToString(consortiumSchema)+query, bytes.NewReader(csv))
		req.Header.Set("Content-Type", "text/csv")
		k := f.Keys[who]
		if err := audit.SignRequest(req, csv, k.Ed25519(), k.Address().String()); err != nil {
			t.Fatal(err)
		}
		var up UploadResponse
		code, p := apitest.Send(t, req, &up)
		return code, up, p
	}
	if code, _, p := upload("agency1", 0, "&dataset=census"); code != http.StatusConflict || p.Code != "no-ceremony" {
		t.Fatalf("consortium upload before the ceremony: %d %s", code, p.Code)
	}
	if code, _ := f.Do(t, "admin", 0, "POST", "/v1/pseudonyms/ceremony", PseudonymCeremonyRequest{Threshold: 4}, nil); code != http.StatusBadRequest {
		t.Fatalf("threshold 4 of 3: %d", code)
	}
	var cer policies.PseudonymCeremony
	f.Must(t, "admin", 1, "POST", "/v1/pseudonyms/ceremony", PseudonymCeremonyRequest{Threshold: 2}, &cer)
	var again policies.PseudonymCeremony
	f.Must(t, "auditor", 2, "GET", "/v1/pseudonyms", nil, &again)
	if again.ID != cer.ID || again.Threshold != 2 || len(again.Participants) != 3 {
		t.Fatalf("status %+v", again)
	}
	client, err := PseudonymClient(again)
	if err != nil {
		t.Fatal(err)
	}

	// The agency's upload, pseudonymised through its own node.
	if code, _, p := upload("agency1", 0, ""); code != http.StatusBadRequest || p.Code != "bad-parameter" {
		t.Fatalf("consortium upload without a dataset name: %d %s", code, p.Code)
	}
	code, up, p := upload("agency1", 0, "&dataset=census")
	if code != http.StatusCreated || up.Rows != 300 {
		t.Fatalf("upload: %d %s %s", code, p.Code, p.Detail)
	}
	f.Must(t, "agency1", 0, "POST", "/v1/datasets", map[string]any{"name": "census", "schema": json.RawMessage(consortiumSchema), "sha256": up.SHA256, "rows": up.Rows}, nil)

	// The enterprise's list: the job's policy allows lists of up to 5 ids,
	// with manual approval, so the job waits while the list is made.
	pol := apitest.TaxPolicy()
	pol["dataset"] = "census"
	pol["approval"] = map[string]any{"mode": "manual", "approvers": 1}
	pol["join"] = map[string]any{"lists": true, "max_rows_per_person": 1, "max_list_ids": 5}
	f.Must(t, "agency1", 0, "POST", "/v1/policies", pol, nil)
	var job JobResponse
	f.Must(t, "bank", 1, "POST", "/v1/jobs", map[string]any{"query": "SELECT COUNT(*) FROM census", "mode": "masked", "purpose": "credit risk statistics"}, &job)
	if job.Status != policies.JobPending {
		t.Fatalf("job %+v", job)
	}
	ids := [][]byte{[]byte("P000000"), []byte("P000007"), []byte("P000299")}
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeJob, Job: job.Job}
	got, err := client.Pseudonymise(ctx, apiTransport{t, f, "bank", 2}, doc, ids)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := f.Stores[0].Table("census")
	if err != nil {
		t.Fatal(err)
	}
	stored := tab.Cols["person_id"].Pseudo
	for i, row := range []int{0, 7, 299} {
		if !bytes.Equal(got[i][:sandbox.PseudonymSize], stored[row*sandbox.PseudonymSize:(row+1)*sandbox.PseudonymSize]) {
			t.Fatalf("id %s: the enterprise's pseudonym differs from the agency's stored one", ids[i])
		}
	}
	// Another enterprise may not have the bank's batch evaluated; the
	// node evaluates only the request the batch was committed for.
	_, req, _ := client.Blind(ids[:2])
	rb, _ := req.MarshalBinary()
	batch, err := apiTransport{t, f, "bank", 0}.Commit(ctx, policies.PseudonymBatchDoc{Purpose: policies.PurposeJob, Job: job.Job, Count: 2, Request: sha(rb)})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := f.Do(t, "shop", 0, "POST", "/v1/pseudonyms/batches/"+batch+"/evaluate", EvaluateRequest{Request: rb}, nil); code != http.StatusForbidden {
		t.Fatalf("another account's evaluation: %d", code)
	}
	_, other, _ := client.Blind(ids[1:])
	ob, _ := other.MarshalBinary()
	if code, _ := f.Do(t, "bank", 0, "POST", "/v1/pseudonyms/batches/"+batch+"/evaluate", EvaluateRequest{Request: ob}, nil); code != http.StatusBadRequest {
		t.Fatalf("another request than the batch's: %d", code)
	}
	var ev EvaluateResponse
	f.Must(t, "bank", 0, "POST", "/v1/pseudonyms/batches/"+batch+"/evaluate", EvaluateRequest{Request: rb}, &ev)
	if len(ev.Partials) != 2 {
		t.Fatalf("%d partials, want the threshold 2", len(ev.Partials))
	}
	// The list's 5 ids are used: one more is refused before any node
	// evaluates.
	if _, err := client.Pseudonymise(ctx, apiTransport{t, f, "bank", 0}, doc, ids[:1]); err == nil || !bytes.Contains([]byte(err.Error()), []byte("403")) {
		t.Fatalf("a sixth id for a list of at most 5: %v", err)
	}
}

func sha(b []byte) string { return pseudonym.RequestSHA256(b) }
