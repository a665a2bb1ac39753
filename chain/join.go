package chain

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Join asks a member of an existing cluster (at addr) to add this node as
// a voter. The request is signed with the node's key; the leader admits it
// only if the AdmitFunc finds the join permission for its account.
func (n *Node) Join(ctx context.Context, addr string) error {
	j := &joinRequest{ID: n.cfg.ID, Addr: n.cfg.Advertise, Time: time.Now()}
	e := &Entry{Kind: "node.join", Time: j.Time, Payload: j.message()}
	if err := n.cfg.Key.Sign(e); err != nil {
		return err
	}
	j.Algorithm, j.PublicKey, j.Signature = e.Algorithm, e.PublicKey, e.Signature
	status, resp, err := n.rpc.call(ctx, addr, opJoin, j.marshal())
	if err != nil {
		return fmt.Errorf("chain: join via %s: %w", addr, err)
	}
	return n.decodeErr(status, string(resp))
}

// admit handles a join request: on the leader, check the account and add
// the voter; elsewhere, pass the request to the leader.
func (n *Node) admit(ctx context.Context, j *joinRequest) error {
	if !n.IsLeader() {
		_, addr := n.Leader()
		if addr == "" {
			return fmt.Errorf("%w: no leader to admit the node", ErrNoLeader)
		}
		status, resp, err := n.rpc.call(ctx, addr, opJoin, j.marshal())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		return n.decodeErr(status, string(resp))
	}
	account := AddressOf(j.PublicKey)
	if n.cfg.Admit == nil {
		return fmt.Errorf("%w: %s: this cluster has no admission policy", ErrNotAdmitted, account)
	}
	if err := n.cfg.Admit(ctx, account); err != nil {
		return fmt.Errorf("%w: account %s: %v", ErrNotAdmitted, account, err)
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := n.raft.AddVoter(raft.ServerID(j.ID), raft.ServerAddress(j.Addr), 0, timeout).Error(); err != nil {
		return fmt.Errorf("chain: adding voter %s: %w", j.ID, err)
	}
	n.log.Info("node admitted", "peer", j.ID, "addr", j.Addr, "account", account.String())
	return nil
}
