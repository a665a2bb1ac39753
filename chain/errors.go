package chain

import "errors"

// Errors returned by chain. Callers test them with errors.Is; the HTTP API
// maps them to statuses in one place.
var (
	// ErrMalformedEntry: the bytes are not a canonical entry.
	ErrMalformedEntry = errors.New("chain: malformed entry")
	// ErrBadSignature: the entry's signature does not verify.
	ErrBadSignature = errors.New("chain: bad signature")
	// ErrUnknownAlgorithm: a signature algorithm chain does not know.
	ErrUnknownAlgorithm = errors.New("chain: unknown signature algorithm")
	// ErrBadKey: a key or key file that cannot be used.
	ErrBadKey = errors.New("chain: bad key")
	// ErrBadAddress: not a 20-byte hex address.
	ErrBadAddress = errors.New("chain: bad address")
	// ErrRejected: the state machine refused the entry; the wrapped message
	// says why. The entry was not appended.
	ErrRejected = errors.New("chain: entry rejected")
	// ErrNoLeader: no leader is known (election in progress, or this node is
	// cut off from the majority). Retry later.
	ErrNoLeader = errors.New("chain: no leader")
	// ErrStopped: the node is shutting down or has stopped accepting writes
	// after a storage failure.
	ErrStopped = errors.New("chain: node stopped")
	// ErrCorruptStore: the ledger store on disk fails verification.
	ErrCorruptStore = errors.New("chain: corrupt store")
	// ErrBadProofRequest: proof parameters outside the tree.
	ErrBadProofRequest = errors.New("chain: bad proof request")
	// ErrNotAdmitted: a node's account lacks the join permission.
	ErrNotAdmitted = errors.New("chain: node not admitted")
	// ErrBadCheckpoint: a checkpoint note that does not parse or verify.
	ErrBadCheckpoint = errors.New("chain: bad checkpoint")
)
