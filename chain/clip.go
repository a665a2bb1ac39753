package chain

// Clip shortens s for quoting in an error message or a report: its first
// n bytes followed by "..." when anything was cut, s itself otherwise.
// Every package quotes untrusted input through it (each with its own n),
// so a huge or hostile value never floods a message or a log. policies
// keeps one byte-identical copy (policies imports nothing of the module,
// and its clipped reasons enter the replicated state, so the rule may not
// drift).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
