// Package policies is the consortium's "smart contract": the deterministic
// state machine that every node applies to committed ledger entries, and
// that an auditor replays from genesis.
//
// It holds the role -> permission table written by genesis, the accounts
// (public keys, roles, organisation), the datasets' registrations (schema
// with column classes, content hash and row count; never the data), the
// agencies' policies, the jobs with their authorisation state, and the
// privacy budget spent per (population of data subjects, organisation):
// see budget.go.
//
// # Determinism
//
// Apply's outcome depends only on the state, the entry and the block time.
// The state is plain data whose canonical JSON encoding (maps are encoded
// with sorted keys) is hashed by StateHash and written by Snapshot; the
// same log gives byte-identical state on every node.
//
// # Refusals
//
// Apply returns an error (the entry is not committed) only when an entry is
// malformed, replayed, or written by an account without the permission for
// its kind. A job that a policy refuses is committed with status rejected
// and the reason, so that auditors see attempts and not only successes.
//
// The package imports none of the others (DESIGN.md): it sees an entry as
// plain fields (Entry); the ledger's adapter (package audit) checks the
// signatures and unpacks chain's entries into them.
package policies
