// Package sandbox is the job runtime. Today it holds the SQL subset's
// parser (ParseQuery), which gives precise error positions and derives the
// plan that policies are checked against: the aggregates, the grouping
// columns and the filtered columns. Execution over masked columns or CKKS
// ciphertexts, and output control, arrive with the sandbox issues.
package sandbox
