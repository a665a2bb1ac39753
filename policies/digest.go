package policies

// IsSHA256Hex reports whether s is a SHA-256 digest as the ledger writes
// one: exactly 64 lowercase hex digits (hex.EncodeToString of 32 bytes).
// It is the one rule for every digest an entry carries (datasets, flows,
// results, HE ceremonies and shares, pseudonym batches) and for upload
// digests on a node: one spelling per digest, so equal data always means
// equal strings.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
