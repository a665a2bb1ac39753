package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// devTransport is pseudonym.Transport over a dev node's signed API.
type devTransport struct {
	k   *chain.Key
	url string
}

func (d devTransport) Commit(ctx context.Context, doc policies.PseudonymBatchDoc) (string, error) {
	b, _ := json.Marshal(doc)
	var r api.BatchResponse
	err := signedCall(ctx, d.k, "POST", d.url+"/v1/pseudonyms/batches", "application/json", b, &r)
	return r.Batch, err
}

func (d devTransport) Evaluate(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	b, _ := json.Marshal(api.EvaluateRequest{Request: req, Need: need, Exclude: exclude})
	var r api.EvaluateResponse
	err := signedCall(ctx, d.k, "POST", d.url+"/v1/pseudonyms/batches/"+batch+"/evaluate", "application/json", b, &r)
	return r.Partials, err
}

// TestDevConsortiumPseudonyms: sandboxd dev runs the pseudonym key
// ceremony after genesis; an agency pseudonymises ids through any node
// and gets the same pseudonyms; after a restart the nodes still hold
// their shares (0600 files) and give the same pseudonyms again.
func TestDevConsortiumPseudonyms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	stop := startDev(t, dir, base)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+i) }
	load := func(name string) *chain.Key {
		k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	agency, enterprise, auditor := load("agency1"), load("enterprise"), load("auditor")
	var cer policies.PseudonymCeremony
	if err := signedCall(ctx, auditor, "GET", url(0)+"/v1/pseudonyms", "", nil, &cer); err != nil {
		t.Fatal(err)
	}
	if cer.Threshold != 2 || len(cer.Participants) != 3 {
		t.Fatalf("ceremony %+v", cer)
	}
	client, err := api.PseudonymClient(cer)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]byte, 300)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("1101011990%08d", i))
	}
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeDataset, Dataset: "census"}
	want, err := client.PseudonymiseAll(ctx, devTransport{agency, url(1)}, doc, ids, 128, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.PseudonymiseAll(ctx, devTransport{agency, url(2)}, doc, ids[:10], 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("id %d: node2 and node3 gave different pseudonyms", i)
		}
	}
	// Another account may not have an agency's batch evaluated.
	_, req, _ := client.Blind(ids[:1])
	rb, _ := req.MarshalBinary()
	batch, err := devTransport{agency, url(0)}.Commit(ctx, policies.PseudonymBatchDoc{Purpose: policies.PurposeDataset, Dataset: "census", Count: 1, Request: sha(rb)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (devTransport{enterprise, url(0)}).Evaluate(ctx, batch, rb, 2, nil); err == nil {
		t.Fatal("the enterprise had the agency's batch evaluated")
	}
	// Ingest: agency1 uploads the same ids in a column with consortium
	// pseudonyms to its node, which pseudonymises them as the file
	// streams; the stored pseudonyms are the ones any client computes.
	schema := policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "region", Type: policies.TypeString, Class: policies.Public}}}
	var csv bytes.Buffer
	csv.WriteString("person_id,region\n")
	for i, id := range ids {
		fmt.Fprintf(&csv, "%s,r%d\n", id, i%4)
	}
	sb, _ := json.Marshal(schema)
	var up api.UploadResponse
	if err := signedCall(ctx, agency, "POST", url(0)+"/v1/uploads?dataset=census2&schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), &up); err != nil {
		t.Fatal(err)
	}
	reg, _ := json.Marshal(policies.DatasetDoc{Name: "census2", Schema: schema, SHA256: up.SHA256, Rows: up.Rows})
	if err := signedCall(ctx, agency, "POST", url(0)+"/v1/datasets", "application/json", reg, nil); err != nil {
		t.Fatal(err)
	}
	tab, err := sandbox.LoadTable(filepath.Join(dir, "nodes", "node1", "data", "datasets", "census2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := tab.Cols["person_id"].Pseudo
	for i := range ids {
		if !bytes.Equal(stored[i*sandbox.PseudonymSize:(i+1)*sandbox.PseudonymSize], want[i][:sandbox.PseudonymSize]) {
			t.Fatalf("row %d: the ingested pseudonym differs from the client's", i)
		}
	}
	// Without the dataset's name the node refuses before reading the file.
	if err := signedCall(ctx, agency, "POST", url(0)+"/v1/uploads?schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), nil); err == nil {
		t.Fatal("a consortium upload without a dataset name")
	}
	for i := 1; i <= 3; i++ {
		fi, err := os.Stat(filepath.Join(dir, "nodes", fmt.Sprintf("node%d", i), "mpc", "pseudonym.share"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("node%d share file: %v %v", i, fi, err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stop = startDev(t, dir, base)
	var again policies.PseudonymCeremony
	if err := signedCall(ctx, auditor, "GET", url(2)+"/v1/pseudonyms", "", nil, &again); err != nil || again.ID != cer.ID {
		t.Fatalf("after restart the ceremony is %q (%v), was %q", again.ID, err, cer.ID)
	}
	got, err = client.PseudonymiseAll(ctx, devTransport{agency, url(0)}, doc, ids[:5], 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("id %d: another pseudonym after restart", i)
		}
	}
}

func sha(b []byte) string { return pseudonym.RequestSHA256(b) }

var consortiumRows = flag.Int("consortium-rows", 1_000_000, "rows of BenchmarkConsortiumIngest")

// BenchmarkConsortiumIngest uploads a CSV whose identifier column asks for
// consortium pseudonyms to node 1 of a 3-node dev consortium (one
// process): every id is blinded, committed as part of a pseudonym.batch,
// evaluated by 2 of the 3 nodes with proofs, verified, combined and
// stored, as the upload streams.
func BenchmarkConsortiumIngest(b *testing.B) {
	dir := b.TempDir()
	base := freeBase(b)
	stop := startDev(b, dir, base)
	defer stop()
	agency, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "agency1.key"))
	if err != nil {
		b.Fatal(err)
	}
	schema := policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "region", Type: policies.TypeString, Class: policies.Public}}}
	sb, _ := json.Marshal(schema)
	var csv bytes.Buffer
	csv.WriteString("person_id,region\n")
	for i := range *consortiumRows {
		fmt.Fprintf(&csv, "1101011990%08d,r%d\n", i, i%16)
	}
	n := 0
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		var up api.UploadResponse
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/uploads?dataset=census%d&schema=%s", base, n, base64.RawURLEncoding.EncodeToString(sb))
		if err := signedCall(context.Background(), agency, "POST", url, "text/csv", csv.Bytes(), &up); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if up.Rows != int64(*consortiumRows) {
			b.Fatalf("%d rows ingested", up.Rows)
		}
		n++
	}
	b.ReportMetric(total.Seconds()/float64(n), "s/ingest")
	b.ReportMetric(float64(n**consortiumRows)/total.Seconds(), "rows/s")
}
