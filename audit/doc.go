// Package audit verifies the ledger independently of any node: today it
// provides the adapter through which the domain state machine (policies)
// is fed from chain's committed entries, on the nodes and in an auditor's
// replay alike. Full replay reports, invariants and exports arrive with the
// audit issue.
package audit
