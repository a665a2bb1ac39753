// Package chain is the consortium's ledger: signed entries, one RFC 6962
// Merkle log over all of them, blocks that chain by hash, signed
// checkpoints, and replication with hashicorp/raft. It knows nothing of
// jobs or policies: it replicates and proves opaque signed entries and asks
// a StateMachine, declared here and provided by the domain, whether each
// one may be committed.
//
// # Entries and keys
//
// An Entry is {kind, public key, nonce, time, payload, signature} in one
// canonical binary encoding; the author's Address is the first 20 bytes of
// SHA-256 of the public key. Accounts sign with Ed25519 (default) or
// ML-DSA-65 (FIPS 204, from circl). Signatures cover a context string, so a
// key's entry signatures cannot be confused with its other uses. Ed25519 is
// verified under FIPS 186-5 rules (cofactored, canonical encodings) for
// single signatures and batches alike; see verify.go.
//
// # Log, blocks, checkpoints
//
// Every committed entry is a leaf of one RFC 6962 tree (Tree), with
// inclusion and consistency proofs in O(log² n) hashes; a Frontier
// recomputes a root in O(log n) memory for streaming verification.
// Blocks group the entries of one Raft log entry and carry the root after
// their last entry. Checkpoints are C2SP tlog-checkpoint bodies in C2SP
// signed notes with cosignature/v1 (timestamped Ed25519) signatures.
//
// # Threat model
//
// Raft tolerates crashes, not lies: nodes trust the leader's ordering, and
// the leader checks signatures (followers do not re-check pre-verified
// blocks). What protects against a lying node is verifiability: every
// entry is signed by its author, every checkpoint by a node, and anyone can
// recompute roots and check proofs (package audit, sandboxctl ledger
// verify). A node's own store is protected against tampering at rest by the
// Merkle roots, the block chain, per-block seals with the node key, and the
// signed checkpoints: OpenLedger refuses a store that fails any of them.
// Node keys must stay secret; they sign checkpoints, block seals and the
// node's own entries. With Config.TLS the node-to-node port (Raft,
// forwarded writes, reads of the leader's index, blob fetches, the
// services' calls) speaks mutual TLS 1.3: a peer needs a certificate from
// the consortium's CA for the address it is dialled at (NodeTLS). Without
// it the port is plain TCP, for loopback and private networks only. A node
// asking to join is admitted only if the domain's AdmitFunc accepts its
// account on the committed ledger.
//
// # Refusals
//
// A StateMachine that refuses an entry leaves its state unchanged; the
// refusal's message goes back to whoever proposed the entry, and, when the
// StateMachine is a Refuser, so does the domain sentinel it wraps, across
// forwarding hops, so the proposer's errors.Is sees it.
//
// # Concurrency
//
// Node.Append and every Ledger read are safe for concurrent use. The
// StateMachine is called from one goroutine at a time, in log order.
package chain
