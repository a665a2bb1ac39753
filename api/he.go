package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// HENode is what the HE wiring needs of a ledger node (chain.Node).
type HENode interface {
	Append(ctx context.Context, entry []byte) (chain.Receipt, error)
	ReadBarrier(ctx context.Context) error
	Call(ctx context.Context, peer, service string, body []byte) ([]byte, error)
	Peers() ([]chain.Peer, error)
}

// HEState is what it reads of the committed state (policies.Machine).
type HEState interface {
	Account(policies.Address) (policies.Account, bool)
	Can(policies.Address, string) bool
	Accounts() []policies.Account
	HE() (policies.HECeremony, bool)
	HEKey(policies.Address) ([]byte, bool)
	Job(id string) (policies.Job, bool)
	Policy(id string) (policies.Policy, bool)
}

// HE wires mpc's protocols to this node: it is the runner's HEService and
// the Services hook of the node-to-node transport.
type HE struct {
	Party  *mpc.Party
	name   string
	node   HENode
	state  HEState
	key    *chain.Key
	nonces *chain.Nonces
}

// NewHE builds this node's side of the HE protocols, keeping its key
// share in dir; observe (optional, e.g. Server.ObservePhase) is told how
// long the phases of its releases take.
func NewHE(name, dir string, key *chain.Key, node HENode, state HEState, nonces *chain.Nonces, observe func(phase string, d time.Duration)) (*HE, error) {
	h := &HE{name: name, node: node, state: state, key: key, nonces: nonces}
	p, err := mpc.New(mpc.Config{Node: name, Key: key, Dir: dir, Call: node.Call, Ledger: state, Authorise: h.authorise,
		Sync: node.ReadBarrier, Observe: observe})
	if err != nil {
		return nil, err
	}
	h.Party = p
	return h, nil
}

// Keys returns the collective keys once the ceremony committed them and
// this node's copy matches the ledger's digests.
func (h *HE) Keys() (*sandbox.HEKeys, error) {
	k, took := h.Party.Keys()
	var pkSum, galSum string
	if took {
		pkSum, galSum = k.PKSHA256, k.GaloisSHA256
	}
	if err := sandbox.CheckHEKeys(h.state, took, pkSum, galSum); err != nil {
		return nil, err
	}
	return &sandbox.HEKeys{PK: k.PK, Galois: k.Galois}, nil
}

// Release has t nodes re-encrypt an he job's result to its requester.
func (h *HE) Release(ctx context.Context, j policies.Job, ct *rlwe.Ciphertext, lay *sandbox.HELayout) (*rlwe.Ciphertext, []string, error) {
	req := mpc.ShareRequest{Job: j.ID, Ciphertext: heparams.MarshalCiphertext(heparams.Params(), ct), Positions: lay.Positions(), PerCell: len(lay.PerCell), Runner: h.name}
	return h.Party.Release(ctx, req, ct)
}

// authorise runs on every node asked for a share, after the read barrier
// (mpc.Config.Sync): sandbox's he job flow re-checks the job on this
// node's committed ledger and commits he.share before the share exists.
func (h *HE) authorise(ctx context.Context, req *mpc.ShareRequest) (*mpc.Grant, error) {
	g, err := sandbox.AuthoriseHEShare(ctx, h.state, h.commit, sandbox.HEShareAsk{Job: req.Job, Runner: req.Signer,
		PerCell: req.PerCell, CiphertextSHA256: req.CiphertextSHA256(), Active: req.Active})
	if err != nil {
		return nil, err
	}
	return &mpc.Grant{Target: g.Target, Positions: req.Positions, Epsilon: g.Epsilon, Delta: g.Delta, Mechanism: g.Mechanism}, nil
}

// commit commits doc as this node's own entry of the kind.
func (h *HE) commit(ctx context.Context, kind string, doc any) error {
	_, err := commitNodeEntry(ctx, h.node, h.key, h.nonces, kind, doc)
	return err
}

// RunCeremony coordinates the key ceremony among the consortium's nodes
// (the chain's peers whose accounts hold the node role) and commits it.
func (h *HE) RunCeremony(ctx context.Context, threshold int) (*policies.HECeremony, error) {
	if err := h.node.ReadBarrier(ctx); err != nil {
		return nil, err
	}
	if c, ok := h.state.HE(); ok {
		return &c, nil
	}
	nodes, err := ceremonyNodes(h.node, h.state.Accounts(), h.state.Can)
	if err != nil {
		return nil, err
	}
	doc, err := h.Party.RunCeremony(ctx, nodes, threshold)
	if err != nil {
		return nil, err
	}
	if _, err := commitNodeEntry(ctx, h.node, h.key, h.nonces, policies.KindHECeremony, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// heStatus serves GET /v1/he: the committed ceremony (public facts only).
func (s *Server) heStatus(c echo.Context) error {
	cer, ok := s.state.HE()
	if !ok {
		return &problemError{status: http.StatusNotFound, code: "no-ceremony", detail: "no HE key ceremony on the ledger yet"}
	}
	return c.JSON(http.StatusOK, cer)
}

// CeremonyRequest is POST /v1/he/ceremony's body.
type CeremonyRequest struct {
	// Threshold is how many nodes must cooperate to decrypt (default 2).
	Threshold int `json:"threshold,omitempty"`
}

// startCeremony serves POST /v1/he/ceremony: this node coordinates the key
// ceremony and commits it. A consortium has one ceremony: once committed,
// the call answers it again.
func (s *Server) startCeremony(c echo.Context) error {
	if s.he == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-he", detail: "this node runs no HE service"}
	}
	var req CeremonyRequest
	if body := callerOf(c).body; len(body) > 0 {
		if err := decodeStrict(body, &req, "ceremony request"); err != nil {
			return err
		}
	}
	if req.Threshold == 0 {
		req.Threshold = 2
	}
	peers, err := s.he.node.Peers()
	if err != nil {
		return err
	}
	if req.Threshold < 2 || req.Threshold > len(peers) {
		return badRequest("bad-threshold", fmt.Sprintf("threshold %d: need 2 <= threshold <= %d (the consortium's nodes)", req.Threshold, len(peers)))
	}
	_, exists := s.state.HE()
	if err := s.approveCeremony(c, policies.KindHERotate, exists); err != nil {
		return err
	}
	doc, err := s.he.RunCeremony(c.Request().Context(), req.Threshold)
	if err != nil {
		if _, _, known := statusOf(err); known {
			return err
		}
		return &problemError{status: http.StatusBadGateway, code: "ceremony-failed", detail: err.Error()}
	}
	return c.JSON(http.StatusOK, doc)
}

// approveCeremony commits the admin's signed request for the first key
// ceremony of a kind as the ceremony's approval on the ledger, which the
// state machine requires of every ceremony (a re-key is approved
// explicitly beforehand; an approval already pending is kept).
func (s *Server) approveCeremony(c echo.Context, kind string, exists bool) error {
	if exists {
		return nil
	}
	if _, err := s.relay(c, kind, nil); err != nil && !errors.Is(err, policies.ErrConflict) {
		return err
	}
	return nil
}

// registerHEKey relays account.hekey after checking the key parses.
func (s *Server) registerHEKey(c echo.Context) error {
	var d policies.HEKeyDoc
	if err := decodeStrict(callerOf(c).body, &d, "HE key"); err != nil {
		return err
	}
	if d.Params != heparams.Name {
		return badRequest("bad-he-key", fmt.Sprintf("the consortium runs HE parameters %q, the key is for %q", heparams.Name, d.Params))
	}
	if _, err := heparams.ParsePublicKey(d.PublicKey); err != nil {
		return badRequest("bad-he-key", err.Error())
	}
	return s.relayed(policies.KindHEKey)(c)
}
