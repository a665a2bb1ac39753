package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// StateMachine feeds a policies.Machine from chain's entries, checking on
// the way what policies cannot check itself: a relayed request's RFC 9421
// signature by the acting account's current key, and that the request is
// the one its entry kind stands for. Nodes commit through it and auditors
// replay through it, so both apply exactly the same rules.
type StateMachine struct {
	M *policies.Machine
	// Plan, when set, derives each job.submit's plan from its query again:
	// an entry whose relayed plan differs is refused (see PlanFunc).
	Plan PlanFunc
}

var _ chain.StateMachine = StateMachine{}

// NewStateMachine returns an adapter over a fresh policies.Machine.
func NewStateMachine() StateMachine { return StateMachine{M: policies.New()} }

// Apply unpacks and checks an entry, then applies it to the domain state.
func (s StateMachine) Apply(e *chain.Entry, index uint64, blockTime time.Time) error {
	pe, err := s.Unpack(e)
	if err != nil {
		return err
	}
	return s.M.Apply(pe, index, blockTime)
}

// Refusals are the domain's sentinel errors, carried with a refusal to the
// node that proposed the entry (chain.Refuser): the API answers 403 for a
// forbidden act, 409 for a replay, and so on, wherever the leader was.
func (s StateMachine) Refusals() []error {
	return []error{policies.ErrInvalid, policies.ErrForbidden, policies.ErrUnknownAccount, policies.ErrNotFound, policies.ErrReplay, policies.ErrConflict}
}

var _ chain.Refuser = StateMachine{}

// Reset discards the domain state.
func (s StateMachine) Reset() { s.M.Reset() }

// Unpack turns a chain entry into the domain's view of it, verifying the
// relayed request if there is one.
func (s StateMachine) Unpack(e *chain.Entry) (policies.Entry, error) {
	author := policies.Address(e.Author())
	if r, ok := relayOf(e); ok {
		return s.unpackRelay(e, author, r)
	}
	if e.Kind != policies.KindGenesis {
		if acc, ok := s.M.Account(author); ok && acc.PublicKey != nil && !bytes.Equal(acc.PublicKey, e.PublicKey) {
			return policies.Entry{}, fmt.Errorf("%w: entry signed with a key account %s no longer uses", policies.ErrForbidden, author)
		}
	}
	return policies.Entry{
		Author: author, Actor: author, ActorKey: e.PublicKey, Algorithm: e.Algorithm.String(),
		Kind: e.Kind, Time: e.Time, Payload: e.Payload,
		ReplayKey: "entry:" + author.String() + ":" + strconv.FormatUint(e.Nonce, 10), ReplayTime: e.Time,
	}, nil
}

func relayOf(e *chain.Entry) (*Relay, bool) {
	if e.Kind == policies.KindGenesis || len(e.Payload) == 0 || e.Payload[0] != '{' {
		return nil, false
	}
	var probe struct {
		Relay *Relay `json:"relay"`
	}
	if json.Unmarshal(e.Payload, &probe) != nil || probe.Relay == nil {
		return nil, false
	}
	return probe.Relay, true
}

func (s StateMachine) unpackRelay(e *chain.Entry, author policies.Address, r *Relay) (policies.Entry, error) {
	actor, err := policies.ParseAddress(r.Actor)
	if err != nil {
		return policies.Entry{}, err
	}
	if _, ok := RouteFor(e.Kind); !ok {
		return policies.Entry{}, fmt.Errorf("%w: entries of kind %q cannot be relayed", policies.ErrInvalid, clip(e.Kind))
	}
	req, err := r.Request.httpRequest()
	if err != nil {
		return policies.Entry{}, err
	}
	doc, err := DocumentOf(e.Kind, req.Method, req.URL.Path, r.Request.Body)
	if err != nil {
		return policies.Entry{}, err
	}
	var key []byte
	var alg string
	if e.Kind == policies.KindAccountRegister {
		var d policies.RegisterDoc
		if err := json.Unmarshal(doc, &d); err != nil {
			return policies.Entry{}, fmt.Errorf("%w: %s: %v", policies.ErrInvalid, e.Kind, err)
		}
		key, alg = d.PublicKey, d.Algorithm
	} else {
		acc, ok := s.M.Account(actor)
		if !ok || acc.PublicKey == nil {
			return policies.Entry{}, fmt.Errorf("%w: %s (no registered key)", policies.ErrUnknownAccount, actor)
		}
		key, alg = acc.PublicKey, acc.Algorithm
	}
	created, err := VerifyRequest(req, r.Request.Body, actor, key)
	if err != nil {
		return policies.Entry{}, fmt.Errorf("%w: relayed request: %v", policies.ErrForbidden, err)
	}
	act, err := ActKey(req)
	if err != nil {
		return policies.Entry{}, fmt.Errorf("%w: relayed request: %v", policies.ErrForbidden, err)
	}
	var extra []byte
	if len(r.Extra) > 0 {
		extra = r.Extra
	}
	if e.Kind == policies.KindJobSubmit && s.Plan != nil {
		if err := checkPlan(s.Plan, doc, extra); err != nil {
			return policies.Entry{}, err
		}
	}
	return policies.Entry{
		Author: author, Actor: actor, ActorKey: key, Algorithm: alg,
		Kind: e.Kind, Time: e.Time, Payload: doc, Extra: extra,
		ReplayKey: act, ReplayTime: created,
	}, nil
}

// RelayPayload encodes a relay as an entry payload.
func RelayPayload(r Relay) ([]byte, error) {
	return json.Marshal(struct {
		Relay Relay `json:"relay"`
	}{r})
}

// Actor returns whose action a committed entry is: the account a node
// relayed it for, or its author. It does not verify anything (committed
// entries were verified when they were applied).
func Actor(e *chain.Entry) policies.Address {
	if r, ok := relayOf(e); ok {
		if a, err := policies.ParseAddress(r.Actor); err == nil {
			return a
		}
	}
	return policies.Address(e.Author())
}

// Admit is a chain.AdmitFunc: a node may join if its account is a node's
// account (permission node) on the committed ledger.
func (s StateMachine) Admit(_ context.Context, a chain.Address) error {
	if !s.M.Can(policies.Address(a), policies.PermNode) {
		return fmt.Errorf("%w: account %s lacks permission %s", policies.ErrForbidden, policies.Address(a), policies.PermNode)
	}
	return nil
}

// GenesisEntry builds the signed genesis entry: the permission table and
// the first accounts, signed by an admin among them.
func GenesisEntry(admin *chain.Key, g policies.Genesis, now time.Time) ([]byte, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	return admin.NewEntry(policies.KindGenesis, 0, now, b)
}

// JobOf returns the job a committed entry acts on (approvals, rejections,
// start, completion, failure, decryption shares), or "". Like Actor it
// verifies nothing.
func JobOf(e *chain.Entry) string {
	switch e.Kind {
	case policies.KindJobApprove, policies.KindJobReject, policies.KindJobStart, policies.KindJobComplete, policies.KindJobFail, policies.KindHEShare,
		policies.KindJobKey, policies.KindJobFlow, policies.KindJobList:
	default:
		return ""
	}
	payload := e.Payload
	if r, ok := relayOf(e); ok {
		req, err := r.Request.httpRequest()
		if err != nil {
			return ""
		}
		if payload, err = DocumentOf(e.Kind, req.Method, req.URL.Path, r.Request.Body); err != nil {
			return ""
		}
	}
	var d struct {
		Job string `json:"job"`
	}
	if json.Unmarshal(payload, &d) != nil {
		return ""
	}
	return d.Job
}
