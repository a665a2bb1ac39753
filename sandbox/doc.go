// Package sandbox is the job runtime: queries parsed with PostgreSQL's
// grammar (libpg_query through pg_query_go, used nowhere else) and walked
// into the plan policies are checked against, refusing what is unsafe
// with the rule and the position (docs/sql.md); streaming
// CSV ingest that pseudonymises, generalises and clamps into compressed
// columns on the agency's node (Store); a vectorised engine over those
// columns with output control — thresholds, dominance and differential
// privacy (Google's library) — before any result leaves; and the Runner
// that executes authorised jobs and records their start, completion (with
// the result's hash) or failure on the ledger.
//
// Homomorphic (he) mode runs the same plans over CKKS ciphertexts (lattigo
// v5) of the sensitive columns, encrypted under the consortium's collective
// key at ingest or on first use; the result is released only through the
// threshold decryption of package mpc, and every released value states its
// noise (interval.go). Joins across agencies (Joiner, join.go, ship.go) run
// on an executor node over per-job tags: it holds no identity and keeps
// the shipped columns in memory only.
//
// Each released value carries DP noise; intervals are computed from the
// mechanism and the columns' bounds, never from the data.
package sandbox
