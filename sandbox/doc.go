// Package sandbox will be the job runtime: the SQL subset, planning, and
// execution over masked columns or CKKS ciphertexts with output control.
// It arrives with the sandbox issues; nothing here is implemented yet.
package sandbox
