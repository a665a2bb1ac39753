package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/chain"
)

// A program acting as an account: the key file signs each request.
func ExampleClient_Do() {
	cfg := client.DefaultConfig()
	cfg.Server = "http://127.0.0.1:8080"
	cfg.KeyFile = "dev/keys/enterprise.key"
	c := client.New(cfg)
	var out struct {
		Jobs []api.JobResponse `json:"jobs"`
	}
	if err := c.Do(context.Background(), "GET", "/v1/jobs", nil, &out); err != nil {
		log.Fatal(err)
	}
	for _, j := range out.Jobs {
		fmt.Println(j.Job, j.Status)
	}
}

// An auditor's program verifying the ledger as sandboxctl ledger verify
// does, against the consortium's checkpoint keys.
func ExampleVerify() {
	cfg := client.DefaultConfig()
	cfg.KeyFile = "dev/keys/auditor.key"
	trust, err := chain.ParseVerifierList("trust.vkeys", []byte("node1+0123abcd+..."))
	if err != nil {
		log.Fatal(err)
	}
	v, err := client.Verify(context.Background(), client.New(cfg), client.VerifyConfig{Trust: trust})
	if err != nil {
		log.Fatal(err)
	}
	if !v.Report.OK {
		log.Fatalf("failed at index %d: %s", v.Report.FirstFailure.Index, v.Report.FirstFailure.Reason)
	}
	fmt.Println("all checks hold for", v.Report.Entries, "entries")
}
