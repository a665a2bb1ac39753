package chain

import "time"

// ProposeVerifiedForTest proposes entries as one block, skipping signature
// checks (they were verified when made), and waits for it to apply.
func ProposeVerifiedForTest(n *Node, entries [][]byte) error {
	p := &proposal{Time: time.Now().UTC(), Proposer: n.cfg.ID, Entries: entries}
	return n.raft.Apply(p.marshal(), 30*time.Second).Error()
}

// TransferLeadershipForTest asks Raft to hand n's leadership to another
// voter and waits for the answer.
func TransferLeadershipForTest(n *Node) error {
	return n.raft.LeadershipTransfer().Error()
}
