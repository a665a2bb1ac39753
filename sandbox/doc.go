// Package sandbox is the job runtime: queries parsed with PostgreSQL's
// grammar (libpg_query through pg_query_go, used nowhere else) and walked
// into the plan policies are checked against, refusing what is unsafe
// with the rule and the position (docs/sql.md); streaming
// CSV ingest that pseudonymises, generalises and clamps into compressed
// columns on the agency's node (Store); a vectorised engine over those
// columns with output control — thresholds, dominance and differential
// privacy (Google's library) — before any result leaves; and the Runner
// that executes authorised jobs and records their start, completion (with
// the result's hash) or failure on the ledger. Homomorphic execution is
// not here yet.
package sandbox
