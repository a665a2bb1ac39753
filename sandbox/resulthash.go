package sandbox

import (
	"encoding/json"
	"errors"
)

// ErrResultHash: a result whose bytes do not hash to the hash the ledger
// committed for its job (job.complete). It sits apart from the engine's
// sentinels (table.go) because it is raised by readers of results, not by
// their computation.
var ErrResultHash = errors.New("sandbox: result does not hash to the committed hash")

// CheckResult parses a delivered result and re-hashes it as Seal does,
// returning it if its hash is committed (the hex SHA-256 job.complete
// holds) and ErrResultHash otherwise: a node delivers, and an auditor
// accepts, only the result the ledger holds. A result that does not parse
// is also ErrResultHash (it hashes to nothing committed).
func CheckResult(raw []byte, committed string) (*Result, error) {
	var res Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, ErrResultHash
	}
	claimed := res.ResultSHA256
	if err := res.Seal(); err != nil || res.ResultSHA256 != committed || claimed != committed {
		return nil, ErrResultHash
	}
	return &res, nil
}
