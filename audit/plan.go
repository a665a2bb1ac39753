package audit

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/datasandbox/datasandbox/policies"
)

// PlanFunc derives a job's dataset and plan from its SQL text. The policy
// check reads the plan a node relays beside the query, while the engine
// runs the query itself: a node that relayed a plan other than its query's
// would have the policy judge one query and the engine run another. So
// whoever applies entries derives the plan again and compares. The audit
// package does not parse SQL (that is the sandbox's, which it may not
// import): cmd wires sandbox.DerivePlan. It MUST be deterministic: every
// node and every auditor derives the same plan from the same text.
type PlanFunc func(query string) (dataset string, plan policies.Plan, err error)

// checkPlan refuses a job.submit whose relayed dataset and plan are not
// the ones its query derives.
func checkPlan(derive PlanFunc, doc, extra []byte) error {
	var d policies.JobDoc
	var x policies.JobExtra
	if err := json.Unmarshal(doc, &d); err != nil {
		return fmt.Errorf("%w: job.submit: %v", policies.ErrInvalid, err)
	}
	if err := json.Unmarshal(extra, &x); err != nil {
		return fmt.Errorf("%w: job.submit without its plan: %v", policies.ErrInvalid, err)
	}
	ds, p, err := derive(d.Query)
	if err != nil {
		return fmt.Errorf("%w: job.submit: the query does not derive a plan: %v", policies.ErrInvalid, err)
	}
	want, _ := json.Marshal(p)
	got, _ := json.Marshal(x.Plan)
	if ds != x.Dataset || !bytes.Equal(want, got) {
		return fmt.Errorf("%w: job.submit: the relayed plan is not its query's (dataset %q, plan %s; the query's: dataset %q, plan %s)",
			policies.ErrInvalid, clip(x.Dataset), clip(string(got)), clip(ds), clip(string(want)))
	}
	return nil
}
