package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// HealthResponse is GET /v1/health.
type HealthResponse struct {
	Status     string `json:"status"`
	Node       string `json:"node"`
	Leader     string `json:"leader"`
	LedgerSize uint64 `json:"ledger_size"`
	// Error says why a failed node stopped (its stores cannot be
	// written); it then answers writes and reads with 503.
	Error string `json:"error,omitempty"`
}

func (s *Server) health(c echo.Context) error {
	l := s.node.Ledger()
	leader, _ := s.node.Leader()
	h := HealthResponse{Status: "ok", Node: s.node.ID(), Leader: leader, LedgerSize: l.Size()}
	status := http.StatusOK
	if err := s.node.Err(); err != nil {
		h.Status, h.Error = "failed", err.Error()
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, h)
}

// CheckpointResponse is GET /v1/ledger/checkpoint.
type CheckpointResponse struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
	Note string `json:"note"`
}

func (s *Server) checkpoint(c echo.Context) error {
	cp, err := s.node.Ledger().Checkpoint()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, CheckpointResponse{Size: cp.Size, Root: b64(cp.Root[:]), Note: string(cp.Note)})
}

// EntriesResponse is GET /v1/ledger/entries.
type EntriesResponse struct {
	Entries []IndexedEntry `json:"entries"`
}

// IndexedEntry is one raw entry and its log index.
type IndexedEntry struct {
	Index uint64 `json:"index"`
	Entry string `json:"entry"`
}

// parseUint reads a non-negative decimal query parameter.
func parseUint(name, v string) (uint64, error) {
	if v == "" {
		return 0, badRequest("missing-parameter", fmt.Sprintf("query parameter %q is required", name))
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("bad-parameter", fmt.Sprintf("query parameter %q must be a non-negative integer, got %q", name, clip(v)))
	}
	return n, nil
}

func clip(s string) string { return chain.Clip(s, 32) }

// parseRange reads start and end (exclusive) of an entries request; end
// defaults to start+max and is capped at start+max. Entries past the log's
// end are simply absent from the answer (the client pages on).
func parseRange(start, end string, max int) (uint64, uint64, error) {
	s, err := parseUint("start", start)
	if err != nil {
		return 0, 0, err
	}
	e := s + uint64(max)
	if e < s { // overflow
		e = ^uint64(0)
	}
	if end != "" {
		ee, err := parseUint("end", end)
		if err != nil {
			return 0, 0, err
		}
		if ee < s {
			return 0, 0, badRequest("bad-range", fmt.Sprintf("end %d is before start %d", ee, s))
		}
		if ee < e {
			e = ee
		}
	}
	return s, e, nil
}

func (s *Server) entries(c echo.Context) error {
	start, end, err := parseRange(c.QueryParam("start"), c.QueryParam("end"), s.cfg.MaxPage)
	if err != nil {
		return err
	}
	raws, err := s.node.Ledger().Entries(start, end, s.cfg.MaxPage)
	if err != nil {
		return err
	}
	keep := s.readFilter(callerOf(c))
	out := EntriesResponse{Entries: make([]IndexedEntry, 0, len(raws))}
	for i, r := range raws {
		if keep(r) {
			out.Entries = append(out.Entries, IndexedEntry{Index: start + uint64(i), Entry: b64(r)})
		}
	}
	if n := start + uint64(len(raws)); len(out.Entries) < len(raws) && n < s.node.Ledger().Size() {
		// Filtered pages may be short or empty; tell the client where to go on.
		c.Response().Header().Set("Next-Start", strconv.FormatUint(n, 10))
	}
	return c.JSON(http.StatusOK, out)
}

// AppendRequest is POST /v1/ledger/entries: one entry signed by its author.
type AppendRequest struct {
	Entry string `json:"entry"`
}

// AppendResponse says where the entry was committed.
type AppendResponse struct {
	Index     uint64 `json:"index"`
	LeafHash  string `json:"leaf_hash"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// parseAppendRequest reads a request body from an untrusted client.
func parseAppendRequest(r io.Reader) ([]byte, error) {
	var req AppendRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("bad-body", "body must be JSON {\"entry\": \"<base64>\"}: "+clip(err.Error()))
	}
	if req.Entry == "" {
		return nil, badRequest("bad-body", `field "entry" is required`)
	}
	raw, err := base64.StdEncoding.DecodeString(req.Entry)
	if err != nil {
		return nil, badRequest("bad-body", `field "entry" must be standard base64`)
	}
	return raw, nil
}

// readFilter applies the caller's read permission (the patent's read-all,
// read-group, read-own) to committed entries. An account's own entries are
// those it acted in and those acting on its own jobs (approvals, start,
// completion, decryption shares), so that an enterprise can prove its
// job's whole history.
func (s *Server) readFilter(who *caller) func(raw []byte) bool {
	if s.state.Can(who.addr, policies.PermReadAll) {
		return func([]byte) bool { return true }
	}
	group := s.state.Can(who.addr, policies.PermReadGroup) && who.account.Org != ""
	own := s.state.Can(who.addr, policies.PermReadOwn)
	return func(raw []byte) bool {
		e, err := chain.ParseEntry(raw)
		if err != nil {
			return false
		}
		actor := audit.Actor(e)
		if own && actor == who.addr {
			return true
		}
		if own {
			if id := audit.JobOf(e); id != "" {
				if j, ok := s.state.Job(id); ok && j.Requester == who.addr {
					return true
				}
			}
		}
		if group {
			acc, ok := s.state.Account(actor)
			return ok && acc.Org == who.account.Org
		}
		return false
	}
}

func (s *Server) appendEntry(c echo.Context) error {
	raw, err := parseAppendRequest(bytes.NewReader(callerOf(c).body))
	if err != nil {
		return err
	}
	if e, err := chain.ParseEntry(raw); err != nil {
		return err
	} else if policies.Address(e.Author()) != callerOf(c).addr {
		return forbidden("an account submits only entries it signed itself")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.AppendTimeout)
	defer cancel()
	r, err := s.node.Append(ctx, raw)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if r.Duplicate {
		status = http.StatusOK
	}
	return c.JSON(status, AppendResponse{Index: r.Index, LeafHash: b64(r.LeafHash[:]), Duplicate: r.Duplicate})
}

// InclusionResponse is GET /v1/ledger/proof/inclusion.
type InclusionResponse struct {
	Index  uint64   `json:"index"`
	Size   uint64   `json:"size"`
	Hashes []string `json:"hashes"`
}

// parseProofQuery reads two required integers a < or <= b.
func parseProofQuery(aName, a, bName, b string) (uint64, uint64, error) {
	x, err := parseUint(aName, a)
	if err != nil {
		return 0, 0, err
	}
	y, err := parseUint(bName, b)
	if err != nil {
		return 0, 0, err
	}
	return x, y, nil
}

func (s *Server) inclusion(c echo.Context) error {
	index, size, err := parseProofQuery("index", c.QueryParam("index"), "size", c.QueryParam("size"))
	if err != nil {
		return err
	}
	p, err := s.node.Ledger().InclusionProof(index, size)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, InclusionResponse{Index: index, Size: size, Hashes: hashes64(p)})
}

// ConsistencyResponse is GET /v1/ledger/proof/consistency.
type ConsistencyResponse struct {
	First  uint64   `json:"first"`
	Second uint64   `json:"second"`
	Hashes []string `json:"hashes"`
}

func (s *Server) consistency(c echo.Context) error {
	first, second, err := parseProofQuery("first", c.QueryParam("first"), "second", c.QueryParam("second"))
	if err != nil {
		return err
	}
	p, err := s.node.Ledger().ConsistencyProof(first, second)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ConsistencyResponse{First: first, Second: second, Hashes: hashes64(p)})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func hashes64(h []chain.Hash) []string {
	out := make([]string, len(h))
	for i := range h {
		out[i] = b64(h[i][:])
	}
	return out
}

// BlockResponse is one block header.
type BlockResponse struct {
	Height     uint64 `json:"height"`
	Prev       string `json:"prev"`
	FirstIndex uint64 `json:"first_index"`
	Count      uint32 `json:"count"`
	Root       string `json:"root"`
	Time       string `json:"time"` // RFC 3339 with nanoseconds
	Proposer   string `json:"proposer"`
	Hash       string `json:"hash"`
}

func (s *Server) blocks(c echo.Context) error {
	start, end, err := parseRange(c.QueryParam("start"), c.QueryParam("end"), s.cfg.MaxPage)
	if err != nil {
		return err
	}
	l := s.node.Ledger()
	out := []BlockResponse{}
	if start == 0 {
		start = 1
	}
	for h := start; h < end && h <= l.Height(); h++ {
		b, err := l.Block(h)
		if err != nil {
			return err
		}
		hash := b.Hash()
		out = append(out, BlockResponse{Height: b.Height, Prev: b64(b.Prev[:]), FirstIndex: b.FirstIndex, Count: b.Count,
			Root: b64(b.Root[:]), Time: b.Time.UTC().Format(time.RFC3339Nano), Proposer: b.Proposer, Hash: b64(hash[:])})
	}
	return c.JSON(http.StatusOK, map[string]any{"blocks": out})
}

// StateResponse is GET /v1/ledger/state.
type StateResponse struct {
	Applied   uint64 `json:"applied"`
	StateHash string `json:"state_hash"`
}

func (s *Server) stateHash(c echo.Context) error {
	// The hash and the count must describe the same state: read the count
	// on both sides of the hash and retry if an entry was applied between.
	for {
		n := s.node.Ledger().Applied()
		h := s.state.StateHash()
		if s.node.Ledger().Applied() == n {
			return c.JSON(http.StatusOK, StateResponse{Applied: n, StateHash: hex.EncodeToString(h[:])})
		}
	}
}
