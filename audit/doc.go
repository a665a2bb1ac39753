// Package audit verifies the ledger without trusting any node.
//
// StateMachine feeds the domain state machine (policies) from chain's
// committed entries — on every node and in an auditor's replay alike —
// and checks on the way what policies cannot: the RFC 9421 signature of
// each request a node relays for an account (relay.go, with
// yaronf/httpsign behind this package), and that the request is the one
// its entry kind stands for. Verify streams a whole ledger from any Source
// (a node's API, or an export file) and checks block links and hashes,
// entry signatures, Merkle roots, the signed checkpoint, a full replay and
// the replayed state's invariants, in memory that does not grow with the
// ledger. NewView puts the replayed state's names, budgets and history
// beside the report (BlockLog keeps the block headers a verification
// reads), and WriteHTML renders that view as one self-contained page, the
// one sandboxctl console shows its auditors.
package audit
