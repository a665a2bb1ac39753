package policies

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// Entry is a committed ledger entry as the state machine sees it. The
// adapter (package audit) has checked the author's signature and, for an
// entry a node relays for an account, the account's request signature.
type Entry struct {
	Author Address // who signed the ledger entry: the actor, or a node relaying
	Actor  Address // whose action it is (equal to Author for direct entries)
	// ActorKey is the public key the actor's signature was checked with.
	ActorKey  []byte
	Algorithm string
	Kind      string
	Time      time.Time // the author's time
	Payload   []byte    // the action document (JSON)
	// Extra is what a relaying node adds to the actor's document: for
	// job.submit, the dataset and the query's plan.
	Extra []byte
	// ReplayKey identifies the signed act (the request signature, or the
	// author and nonce); it is refused a second time. ReplayTime anchors
	// it: the request's created time, or the entry's time.
	ReplayKey  string
	ReplayTime time.Time
}

// AddressOf derives an address from a public key, as chain does.
func AddressOf(pub []byte) Address {
	sum := sha256.Sum256(pub)
	var a Address
	copy(a[:], sum[:20])
	return a
}

// Kinds of entries.
const (
	KindGenesis         = "genesis"
	KindAccountRegister = "account.register"
	KindAccountGrant    = "account.grant"
	KindAccountRevoke   = "account.revoke"
	KindAccountRotate   = "account.rotate"
	KindTableSet        = "table.set"
	KindDatasetRegister = "dataset.register"
	KindPolicyPublish   = "policy.publish"
	KindPolicyRevoke    = "policy.revoke"
	KindJobSubmit       = "job.submit"
	KindJobApprove      = "job.approve"
	KindJobReject       = "job.reject"
	KindJobStart        = "job.start"
	KindJobComplete     = "job.complete"
	KindJobFail         = "job.fail"
	// Joins (join.go): a node's long-term HPKE key, a join's per-job key
	// sealed to its owner nodes, and each column shipment to the executor.
	KindNodeHPKE = "node.hpke"
	KindJobKey   = "job.key"
	KindJobFlow  = "job.flow"
)

var knownPermissions = []string{PermJoin, PermNode, PermSync, PermReadAll, PermReadGroup, PermReadOwn, PermGrant,
	PermRegisterDataset, PermPublishPolicy, PermApproveJob, PermSubmitJob}

// KindPermission names the permission an actor needs for entries of kind
// ("" for kinds with their own rule).
func KindPermission(kind string) string { return kindPermission[kind] }

// kindPermission is the table behind KindPermission; Apply reads it, so it
// is a consensus rule and nothing outside may change it.
var kindPermission = map[string]string{
	KindAccountGrant: PermGrant, KindAccountRevoke: PermGrant, KindTableSet: PermGrant,
	KindDatasetRegister: PermRegisterDataset, KindPolicyPublish: PermPublishPolicy, KindPolicyRevoke: PermPublishPolicy,
	KindJobSubmit: PermSubmitJob, KindJobApprove: PermApproveJob, KindJobReject: PermApproveJob,
	KindJobStart: PermNode, KindJobComplete: PermNode, KindJobFail: PermNode,
	KindHECeremony: PermNode, KindHEShare: PermNode, KindHERotate: PermGrant,
	KindPseudonymCeremony: PermNode, KindPseudonymRotate: PermGrant,
	KindNodeHPKE: PermNode, KindJobKey: PermNode, KindJobFlow: PermNode,
	KindJobList:   PermSubmitJob,
	KindLimitsSet: PermGrant,
}

// nodeKinds are the acts only a node's own account commits, each from the
// node entitled to it (the handlers check which): job progress from the
// node that holds the job's dataset, HE material from the ceremony's
// participants. They are never relayed for an account.
var nodeKinds = map[string]bool{
	KindJobStart: true, KindJobComplete: true, KindJobFail: true,
	KindHECeremony: true, KindHEShare: true,
	KindPseudonymCeremony: true,
	KindNodeHPKE:          true, KindJobKey: true, KindJobFlow: true,
}

// IsNodeKind reports whether only a node's own account may commit entries
// of the kind.
func IsNodeKind(kind string) bool { return nodeKinds[kind] }

func decode(e Entry, v any) error {
	if err := strictUnmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, e.Kind, err)
	}
	return nil
}
