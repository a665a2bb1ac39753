package policies

// IsSHA256Hex reports whether s is a SHA-256 digest as the ledger writes
// one: exactly 64 lowercase hex digits (hex.EncodeToString of 32 bytes).
// It is the one rule for every SHA-256 an entry carries (datasets,
// results, HE ceremonies and shares, pseudonym batches) and for upload
// digests on a node: one spelling per digest, so equal data always means
// equal strings.
func IsSHA256Hex(s string) bool { return isHex32(s) }

// IsBLAKE3Hex is IsSHA256Hex for the BLAKE3 digests (256 bits) of what a
// join ships (job.flow, job.list): tens of megabytes per job, hashed by
// the shipper and again by the runner, where BLAKE3 is about twice as
// fast as SHA-256 (SHA-NI) on one core.
func IsBLAKE3Hex(s string) bool { return isHex32(s) }

// oneShipDigest is a job.flow's or job.list's digest rule: its blake3, or
// its sha256 as entries committed before BLAKE3 carry (so that a ledger
// that has them still replays, and a node not yet upgraded can still
// ship), exactly one of them.
func oneShipDigest(blake3, sha256 string) bool {
	if blake3 != "" {
		return sha256 == "" && IsBLAKE3Hex(blake3)
	}
	return IsSHA256Hex(sha256)
}

// isHex32 is 32 bytes in lowercase hex.
func isHex32(s string) bool {
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
