package policies

import "fmt"

// Join is what a policy allows its dataset to be joined with (CONTRACT.md,
// "Joins"): other consortium-pseudonymised datasets, and the enterprise's
// own id lists. Without it a dataset is never joined. The joins
// themselves run in a later issue; this issue uses Lists and MaxListIDs
// to bound what an enterprise may pseudonymise for a job.
type Join struct {
	// Datasets names the datasets it may be joined with ("*": any
	// consortium-pseudonymised one).
	Datasets []string `json:"datasets,omitempty"`
	// Lists says whether an enterprise's own id list may be joined.
	Lists bool `json:"lists,omitempty"`
	// MaxRowsPerPerson bounds each person's rows from each side.
	MaxRowsPerPerson int `json:"max_rows_per_person"`
	// MaxListIDs bounds the ids an enterprise may have pseudonymised for
	// one job's list (DefaultMaxListIDs when 0). An extension of the
	// contract's join document.
	MaxListIDs int64 `json:"max_list_ids,omitempty"`
}

// DefaultMaxListIDs is a job's list bound when the policy sets none.
const DefaultMaxListIDs = 100_000

// ListIDs is the bound on one job's list.
func (j *Join) ListIDs() int64 {
	if j.MaxListIDs > 0 {
		return j.MaxListIDs
	}
	return DefaultMaxListIDs
}

func (j *Join) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: policy: join: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	for _, d := range j.Datasets {
		if d != "*" && !identRE.MatchString(d) {
			return bad("dataset %q is neither a dataset name nor \"*\"", clip(d))
		}
	}
	if len(j.Datasets) == 0 && !j.Lists {
		return bad("names no dataset and allows no list: leave join out instead")
	}
	if j.MaxRowsPerPerson < 1 {
		return bad("max_rows_per_person must be at least 1")
	}
	if j.MaxListIDs < 0 || j.MaxListIDs > 100_000_000 {
		return bad("max_list_ids must be in 0..100000000")
	}
	if j.MaxListIDs > 0 && !j.Lists {
		return bad("max_list_ids without lists")
	}
	return nil
}
