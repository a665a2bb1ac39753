// Package sandbox is the job runtime: the SQL subset's parser (with
// column positions) and the plan policies are checked against; streaming
// CSV ingest that pseudonymises, generalises and clamps into compressed
// columns on the agency's node (Store); a vectorised engine over those
// columns with output control — thresholds, dominance and differential
// privacy (Google's library) — before any result leaves; and the Runner
// that executes authorised jobs and records their start, completion (with
// the result's hash) or failure on the ledger. Homomorphic execution is
// not here yet.
package sandbox
