package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/policies"
)

func pseudonymCommands() []command {
	return []command{
		{"pseudonym status", "the consortium pseudonym key: participants, threshold, verification keys (checked against the dealers' commitments)", "", "sandboxctl --key auditor.key pseudonym status", cmdPseudonymStatus},
		{"pseudonym ceremony", "have the node coordinate the pseudonym key ceremony among the consortium's nodes (admin, once)", "[--threshold T]", "sandboxctl --key admin.key pseudonym ceremony --threshold 2", cmdPseudonymCeremony},
		{"pseudonym ids", "consortium pseudonyms of your ids (one per line) for a job; they leave this machine blinded only", "--file IDS.txt --job ID [--batch N]", "sandboxctl --key enterprise.key pseudonym ids --file customers.txt --job job-12", cmdPseudonymIDs},
	}
}

func cmdPseudonymStatus(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var c policies.PseudonymCeremony
	if err := newClient(g).Do(ctx, "GET", "/v1/pseudonyms", nil, &c); err != nil {
		return err
	}
	return printPseudonymCeremony(g, c)
}

func cmdPseudonymCeremony(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	threshold := fs.Int("threshold", 2, "how many nodes must cooperate to evaluate")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var c policies.PseudonymCeremony
	if err := newClient(g).Do(ctx, "POST", "/v1/pseudonyms/ceremony", api.PseudonymCeremonyRequest{Threshold: *threshold}, &c); err != nil {
		return err
	}
	return printPseudonymCeremony(g, c)
}

func printPseudonymCeremony(g *globals, c policies.PseudonymCeremony) error {
	// Checked here, on the user's machine: the keys must follow from the
	// commitments, whatever the node says.
	_, checkErr := api.PseudonymClient(c)
	if g.json {
		if checkErr != nil {
			return checkErr
		}
		return printJSON(g.stdout, c)
	}
	nodes := make([]string, len(c.Participants))
	for i, p := range c.Participants {
		nodes[i] = p.Node
	}
	fmt.Fprintf(g.stdout, "pseudonym key ceremony %s (%s, generation %d): any %d of %s evaluate together, none alone\n",
		c.ID, c.Suite, c.Generation, c.Threshold, strings.Join(nodes, ", "))
	fmt.Fprintf(g.stdout, "  public key  %s\n", hex.EncodeToString(c.PublicKey))
	w := table(g)
	fmt.Fprintln(w, "  node\tpoint\taddress\tverification key")
	for _, p := range c.Participants {
		fmt.Fprintf(w, "  %s\t%d\t%s\t%s\n", p.Node, p.Point, p.Address, hex.EncodeToString(p.VerificationKey))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if checkErr != nil {
		return checkErr
	}
	fmt.Fprintln(g.stdout, "  keys follow from the dealers' commitments: yes")
	return nil
}

// httpTransport reaches a node for pseudonym.Client over the signed API.
type httpTransport struct{ c *client.Client }

func (t httpTransport) Commit(ctx context.Context, doc policies.PseudonymBatchDoc) (string, error) {
	var r api.BatchResponse
	if err := t.c.Do(ctx, "POST", "/v1/pseudonyms/batches", doc, &r); err != nil {
		return "", err
	}
	return r.Batch, nil
}

func (t httpTransport) Evaluate(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	var r api.EvaluateResponse
	if err := t.c.Do(ctx, "POST", "/v1/pseudonyms/batches/"+batch+"/evaluate", api.EvaluateRequest{Request: req, Need: need, Exclude: exclude}, &r); err != nil {
		return nil, err
	}
	return r.Partials, nil
}

func cmdPseudonymIDs(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	file := fs.String("file", "", "ids, one per line")
	job := fs.String("job", "", "the job the list is for")
	size := fs.Int("batch", 4096, "ids per batch (each batch is one ledger entry)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *file == "" || *job == "" {
		return errors.New("pseudonym ids needs --file and --job")
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	var ids [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			ids = append(ids, []byte(line))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("%s holds no ids", *file)
	}
	cer, out, err := pseudonymiseForJob(ctx, newClient(g), *job, ids, *size)
	if err != nil {
		return err
	}
	if g.json {
		hexes := make([]string, len(out))
		for i, p := range out {
			hexes[i] = hex.EncodeToString(p)
		}
		return printJSON(g.stdout, map[string]any{"ceremony": cer, "pseudonyms": hexes})
	}
	for _, p := range out {
		fmt.Fprintln(g.stdout, hex.EncodeToString(p))
	}
	return nil
}
