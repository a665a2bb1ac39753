package api

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc"
	"github.com/datasandbox/datasandbox/policies"
)

// ceremonyNodes lists the chain's peers as the participants of a key
// ceremony (HE or pseudonym), each with its node account on the ledger
// (permission node, found by the peer's name), sorted by name.
func ceremonyNodes(node HENode, accts []policies.Account, can func(policies.Address, string) bool) ([]mpc.Participant, error) {
	peers, err := node.Peers()
	if err != nil {
		return nil, err
	}
	var nodes []mpc.Participant
	for _, p := range peers {
		i := slices.IndexFunc(accts, func(a policies.Account) bool { return a.Name == p.ID && can(a.Address, policies.PermNode) })
		if i < 0 {
			return nil, fmt.Errorf("peer %s has no node account on the ledger", p.ID)
		}
		nodes = append(nodes, mpc.Participant{Node: p.ID, Address: accts[i].Address})
	}
	slices.SortFunc(nodes, func(a, b mpc.Participant) int { return strings.Compare(a.Node, b.Node) })
	return nodes, nil
}

// commitNodeEntry signs doc as this node's own entry of the kind (a
// ceremony, a decryption share, a pseudonym batch) and commits it.
func commitNodeEntry(ctx context.Context, node HENode, key *chain.Key, nonces *chain.Nonces, kind string, doc any) (chain.Receipt, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return chain.Receipt{}, err
	}
	raw, err := key.NewEntry(kind, nonces.Next(), time.Now(), b)
	if err != nil {
		return chain.Receipt{}, err
	}
	rc, err := node.Append(ctx, raw)
	if err != nil {
		return rc, fmt.Errorf("%s not committed: %w", kind, err)
	}
	return rc, nil
}
