package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// PseudonymState is what the pseudonym wiring reads of the committed
// state (policies.Machine).
type PseudonymState interface {
	mpc.PseudonymLedger
	Accounts() []policies.Account
}

// Pseudonym wires mpc's consortium-pseudonym protocols to this node: it
// serves the pseudonym.* services of the node-to-node transport, runs the
// key ceremony and gathers partial evaluations for clients.
type Pseudonym struct {
	Party  *mpc.Pseudonyms
	name   string
	node   HENode
	state  PseudonymState
	key    *chain.Key
	nonces *chain.Nonces
}

// NewPseudonym builds this node's side, keeping its key share in dir.
func NewPseudonym(name, dir string, key *chain.Key, node HENode, state PseudonymState, nonces *chain.Nonces) (*Pseudonym, error) {
	p, err := mpc.NewPseudonyms(mpc.PseudonymConfig{Node: name, Key: key, Dir: dir, Call: node.Call, Ledger: state, Sync: node.ReadBarrier})
	if err != nil {
		return nil, err
	}
	return &Pseudonym{Party: p, name: name, node: node, state: state, key: key, nonces: nonces}, nil
}

// RunCeremony coordinates the pseudonym key ceremony among the
// consortium's nodes (the chain's peers whose accounts hold the node
// role) and commits it. Once committed, it answers the committed one,
// unless an admin approved a rotation.
func (p *Pseudonym) RunCeremony(ctx context.Context, threshold int) (*policies.PseudonymCeremony, error) {
	if err := p.node.ReadBarrier(ctx); err != nil {
		return nil, err
	}
	if c, ok := p.state.Pseudonym(); ok {
		return &c, nil
	}
	nodes, err := ceremonyNodes(p.node, p.state.Accounts(), p.state.Can)
	if err != nil {
		return nil, err
	}
	doc, err := p.Party.RunCeremony(ctx, nodes, threshold)
	if err != nil {
		return nil, err
	}
	if _, err := commitNodeEntry(ctx, p.node, p.key, p.nonces, policies.KindPseudonymCeremony, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// Client returns a pseudonym client for the committed ceremony, its keys
// derived from the dealers' commitments and checked against the keys the
// ledger lists (a ceremony whose keys disagree is refused).
func PseudonymClient(c policies.PseudonymCeremony) (*pseudonym.Client, error) {
	points := make([]uint64, len(c.Participants))
	for i, q := range c.Participants {
		points[i] = q.Point
	}
	pub, err := pseudonym.NewPublic(c.Threshold, points, c.Commitments)
	if err != nil {
		return nil, err
	}
	for _, q := range c.Participants {
		if !pub.CheckKey(q.Point, q.VerificationKey) {
			return nil, fmt.Errorf("pseudonym ceremony %s: %s's verification key does not follow from the commitments", c.ID, q.Node)
		}
	}
	if string(pub.PublicKey()) != string(c.PublicKey) {
		return nil, fmt.Errorf("pseudonym ceremony %s: the public key does not follow from the commitments", c.ID)
	}
	return pseudonym.NewClient(pub), nil
}

// SetPseudonym gives the server the node's pseudonym wiring.
func (s *Server) SetPseudonym(p *Pseudonym) { s.ps = p }

func (s *Server) pseudonymRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/v1/pseudonyms", Summary: "the committed pseudonym key ceremony: participants, threshold, verification keys, dealers' commitments", handler: s.pseudonymStatus},
		{Method: "POST", Path: "/v1/pseudonyms/ceremony", Summary: "have this node coordinate the pseudonym key ceremony among the consortium's nodes (admin; once, or after an approved rotation)", Perm: policies.PermGrant, handler: s.startPseudonymCeremony},
		{Method: "POST", Path: "/v1/pseudonyms/rotations", Summary: "approve one new pseudonym key ceremony (admin; {\"reason\": ...})", Perm: policies.PermGrant, handler: s.relayed(policies.KindPseudonymRotate)},
		{Method: "POST", Path: "/v1/pseudonyms/batches", Summary: "commit a pseudonym batch: count, purpose, the blinded request's sha256 (within the caller's quota)", handler: s.commitBatch},
		{Method: "POST", Path: "/v1/pseudonyms/batches/{id}/evaluate", Summary: "partial evaluations of a committed batch's blinded request, with their DLEQ proofs (the batch's requester)", handler: s.evaluateBatch},
	}
}

func (s *Server) pseudonymStatus(c echo.Context) error {
	cer, ok := s.state.(interface {
		Pseudonym() (policies.PseudonymCeremony, bool)
	})
	if !ok {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-pseudonyms", detail: "this node serves no consortium pseudonyms"}
	}
	doc, ok := cer.Pseudonym()
	if !ok {
		return &problemError{status: http.StatusNotFound, code: "no-ceremony", detail: "no pseudonym key ceremony on the ledger yet"}
	}
	return c.JSON(http.StatusOK, doc)
}

// PseudonymCeremonyRequest is POST /v1/pseudonyms/ceremony's body.
type PseudonymCeremonyRequest struct {
	// Threshold is how many nodes must cooperate to evaluate (default 2).
	Threshold int `json:"threshold,omitempty"`
}

func (s *Server) startPseudonymCeremony(c echo.Context) error {
	if s.ps == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-pseudonyms", detail: "this node serves no consortium pseudonyms"}
	}
	var req PseudonymCeremonyRequest
	if body := callerOf(c).body; len(body) > 0 {
		if err := decodeStrict(body, &req, "ceremony request"); err != nil {
			return err
		}
	}
	if req.Threshold == 0 {
		req.Threshold = 2
	}
	peers, err := s.ps.node.Peers()
	if err != nil {
		return err
	}
	if req.Threshold < 2 || req.Threshold > len(peers) {
		return badRequest("bad-threshold", fmt.Sprintf("threshold %d: need 2 <= threshold <= %d (the consortium's nodes)", req.Threshold, len(peers)))
	}
	_, exists := s.ps.state.Pseudonym()
	if err := s.approveCeremony(c, policies.KindPseudonymRotate, exists); err != nil {
		return err
	}
	doc, err := s.ps.RunCeremony(c.Request().Context(), req.Threshold)
	if err != nil {
		if _, _, known := statusOf(err); known {
			return err
		}
		return &problemError{status: http.StatusBadGateway, code: "ceremony-failed", detail: err.Error()}
	}
	return c.JSON(http.StatusOK, doc)
}

// BatchResponse answers POST /v1/pseudonyms/batches.
type BatchResponse struct {
	Batch string `json:"batch"`
	Index uint64 `json:"index"`
}

// commitBatch relays pseudonym.batch; the state machine checks purpose
// and quota, so a batch beyond quota is refused before any evaluation.
func (s *Server) commitBatch(c echo.Context) error {
	var d policies.PseudonymBatchDoc
	if err := decodeStrict(callerOf(c).body, &d, "pseudonym batch"); err != nil {
		return err
	}
	rc, err := s.relay(c, policies.KindPseudonymBatch, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, BatchResponse{Batch: "psb-" + strconv.FormatUint(rc.Index, 10), Index: rc.Index})
}

// EvaluateRequest is POST /v1/pseudonyms/batches/{id}/evaluate's body.
type EvaluateRequest struct {
	Request []byte   `json:"request"`           // pseudonym.Request encoding
	Need    int      `json:"need,omitempty"`    // partials wanted (default: the threshold)
	Exclude []uint64 `json:"exclude,omitempty"` // points not to ask (their proofs failed)
}

// EvaluateResponse carries the partial evaluations, each with its proof.
type EvaluateResponse struct {
	Partials [][]byte `json:"partials"`
}

func (s *Server) evaluateBatch(c echo.Context) error {
	if s.ps == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-pseudonyms", detail: "this node serves no consortium pseudonyms"}
	}
	who := callerOf(c)
	var req EvaluateRequest
	if err := decodeStrict(who.body, &req, "evaluation request"); err != nil {
		return err
	}
	id := c.Param("id")
	if err := s.ps.node.ReadBarrier(c.Request().Context()); err != nil {
		return err
	}
	b, ok := s.ps.state.PseudonymBatch(id)
	if !ok {
		return &problemError{status: http.StatusNotFound, code: "no-batch", detail: fmt.Sprintf("no pseudonym batch %q on the ledger", clipParam(id))}
	}
	if b.Requester != who.addr {
		return forbidden(fmt.Sprintf("batch %s was committed by another account", b.ID))
	}
	cer, _ := s.ps.state.Pseudonym()
	if req.Need == 0 {
		req.Need = cer.Threshold
	}
	r, err := pseudonym.ParseRequest(req.Request)
	if err != nil {
		return badRequest("bad-request", err.Error())
	}
	if pseudonym.RequestSHA256(req.Request) != b.Request || int64(r.Len()) != b.Count {
		return badRequest("not-this-batch", fmt.Sprintf("batch %s was committed for another request (sha256 and count)", b.ID))
	}
	parts, err := s.ps.Party.Gather(c.Request().Context(), id, req.Request, req.Need, req.Exclude)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return err
		}
		return &problemError{status: http.StatusBadGateway, code: "evaluation-failed", detail: err.Error()}
	}
	return c.JSON(http.StatusOK, EvaluateResponse{Partials: parts})
}

func clipParam(s string) string { return chain.Clip(s, 40) }

// localTransport is pseudonym.Transport inside this node, for its own
// uploads: the node commits the batch in its own name (its account's
// organisation is the uploading agency's) and gathers the partials.
type localTransport struct{ p *Pseudonym }

func (t localTransport) Commit(ctx context.Context, doc policies.PseudonymBatchDoc) (string, error) {
	rc, err := commitNodeEntry(ctx, t.p.node, t.p.key, t.p.nonces, policies.KindPseudonymBatch, doc)
	if err != nil {
		return "", err
	}
	return "psb-" + strconv.FormatUint(rc.Index, 10), nil
}

func (t localTransport) Evaluate(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	return t.p.Party.Gather(ctx, batch, req, need, exclude)
}

// consortiumFor returns the upload's Pseudonymiser when its schema has
// consortium identifier columns (nil otherwise). The batches name the
// dataset the upload will be registered as (query parameter dataset),
// so the state machine can bound them by its rows.
func (s *Server) consortiumFor(c echo.Context, schema *policies.Schema) (sandbox.Pseudonymiser, error) {
	need := false
	for _, col := range schema.Columns {
		need = need || col.Pseudonym == policies.PseudonymConsortium
	}
	if !need {
		return nil, nil
	}
	if s.ps == nil {
		return nil, &problemError{status: http.StatusConflict, code: "no-pseudonyms", detail: "this node serves no consortium pseudonyms"}
	}
	name := c.QueryParam("dataset")
	if name == "" {
		return nil, badRequest("bad-parameter", "a schema with consortium pseudonyms needs query parameter dataset: the name the upload will be registered as")
	}
	cer, ok := s.ps.state.Pseudonym()
	if !ok {
		return nil, &problemError{status: http.StatusConflict, code: "no-ceremony", detail: "no pseudonym key ceremony on the ledger yet"}
	}
	client, err := PseudonymClient(cer)
	if err != nil {
		return nil, err
	}
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeDataset, Dataset: name}
	tr := localTransport{s.ps}
	return func(ctx context.Context, _ string, ids [][]byte) ([][]byte, error) {
		return client.Pseudonymise(ctx, tr, doc, ids)
	}, nil
}
