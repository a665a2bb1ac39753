package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// relay commits the caller's signed request as an entry of the given kind,
// signed by this node, and waits until this node has applied it. A request
// whose act the ledger already applied (the same signed request again,
// through any node, under any label) is not committed twice: relay
// returns the receipt of the entry that applied it, so the handler answers
// with the first outcome.
func (s *Server) relay(c echo.Context, kind string, extra any) (chain.Receipt, error) {
	if rc, ok := s.repeated(c); ok {
		return rc, nil
	}
	who := callerOf(c)
	if _, ok := audit.RouteFor(kind); !ok {
		return chain.Receipt{}, fmt.Errorf("api: no route for kind %s", kind)
	}
	if _, err := audit.DocumentOf(kind, c.Request().Method, c.Request().URL.Path, who.body); err != nil {
		return chain.Receipt{}, badRequest("bad-body", err.Error())
	}
	r := audit.Relay{Actor: who.addr.String(), Request: who.request}
	if extra != nil {
		b, err := json.Marshal(extra)
		if err != nil {
			return chain.Receipt{}, err
		}
		r.Extra = b
	}
	payload, err := audit.RelayPayload(r)
	if err != nil {
		return chain.Receipt{}, err
	}
	raw, err := s.key.NewEntry(kind, s.cfg.Nonces.Next(), time.Now(), payload)
	if err != nil {
		return chain.Receipt{}, err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.AppendTimeout)
	defer cancel()
	rc, err := s.node.Append(ctx, raw)
	if errors.Is(err, chain.ErrRejected) && s.node.ReadBarrier(ctx) == nil {
		// Refused as a repeat: the same act reached the ledger through
		// another request in the meantime.
		if rc, ok := s.repeated(c); ok {
			return rc, nil
		}
	}
	if err != nil {
		return rc, err
	}
	return rc, s.node.WaitApplied(ctx, rc.Index)
}

// RepeatHeader marks the answer to a write whose act the ledger had
// already applied: its value is the index of the entry that applied it,
// and the body is the outcome of that entry.
const RepeatHeader = "Sandbox-Repeat-Of"

// repeated reports whether the caller's signed act was already applied,
// and by which entry; it marks the response as a repeat.
func (s *Server) repeated(c echo.Context) (chain.Receipt, bool) {
	i, ok := s.state.Act(callerOf(c).act)
	if !ok {
		return chain.Receipt{}, false
	}
	c.Response().Header().Set(RepeatHeader, strconv.FormatUint(i, 10))
	return chain.Receipt{Index: i, Duplicate: true}, true
}

// WriteResponse answers a committed write.
type WriteResponse struct {
	Kind  string `json:"kind"`
	Index uint64 `json:"index"`
	ID    string `json:"id,omitempty"`
}

// relayed is the handler of a route whose body is the whole document.
func (s *Server) relayed(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		rc, err := s.relay(c, kind, nil)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, WriteResponse{Kind: kind, Index: rc.Index})
	}
}

func decodeStrict(body []byte, v any, what string) error {
	if err := policies.DecodeStrict(body, v); err != nil {
		return badRequest("bad-body", fmt.Sprintf("%s: %v", what, err))
	}
	return nil
}

func (s *Server) registerAccount(c echo.Context) error {
	var d policies.RegisterDoc
	if err := decodeStrict(callerOf(c).body, &d, "account registration must be {\"public_key\": \"<base64>\", \"algorithm\": \"ed25519\" or \"ml-dsa-65\"}"); err != nil {
		return err
	}
	if policies.AddressOf(d.PublicKey) != callerOf(c).addr {
		return badRequest("bad-body", "the key registered must be the one that signs the request (keyid = its address)")
	}
	rc, err := s.relay(c, policies.KindAccountRegister, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, WriteResponse{Kind: policies.KindAccountRegister, Index: rc.Index, ID: callerOf(c).addr.String()})
}

// UploadResponse describes a staged upload.
type UploadResponse struct {
	SHA256 string `json:"sha256"`
	Rows   int64  `json:"rows"`
}

// upload ingests a CSV into this node's staging area: identifiers are
// pseudonymised, quasi-identifiers generalised, sensitive values clamped,
// all written as compressed columns. Nothing goes on the ledger yet: the
// agency then registers the upload by its digest.
func (s *Server) upload(c echo.Context) error {
	if s.data == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-data-store", detail: "this node keeps no datasets"}
	}
	if err := s.holdsFor(callerOf(c).account); err != nil {
		return err
	}
	sb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(c.QueryParam("schema"), "="))
	if err != nil || len(sb) == 0 {
		return badRequest("bad-parameter", "query parameter schema must be the schema JSON in base64url")
	}
	schema, err := policies.ParseSchema(sb)
	if err != nil {
		return badRequest("bad-schema", err.Error())
	}
	if err := s.checkUpload(c); err != nil {
		return err
	}
	want, err := audit.ContentDigestSHA256(c.Request().Header.Get("Content-Digest"))
	if err != nil {
		return unauthorized("bad-digest", err.Error())
	}
	rc := http.NewResponseController(c.Response())
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.UploadTimeout))
	// The answer comes after the whole ingest (consortium pseudonyms of a
	// large file take minutes), not within WriteTimeout.
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.UploadTimeout))
	body := http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxUpload)
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.UploadTimeout)
	defer cancel()
	var pk *rlwe.PublicKey
	switch mode := c.QueryParam("mode"); mode {
	case "", policies.ModeMasked:
	case policies.ModeHE:
		if s.he == nil {
			return &problemError{status: http.StatusConflict, code: "no-he-key", detail: "this node has no HE keys"}
		}
		keys, err := s.he.Keys()
		if err != nil {
			return &problemError{status: http.StatusConflict, code: "no-he-key", detail: "cannot encrypt: " + err.Error()}
		}
		pk = keys.PK
	default:
		return badRequest("bad-parameter", fmt.Sprintf("mode must be masked or he, not %q", mode))
	}
	cons, err := s.consortiumFor(c, schema)
	if err != nil {
		return err
	}
	res, err := s.data.Upload(ctx, body, schema, pk, cons)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &problemError{status: http.StatusRequestEntityTooLarge, code: "body-too-large", detail: fmt.Sprintf("uploads are limited to %d bytes", s.cfg.MaxUpload)}
		}
		return err
	}
	if got, _ := hex.DecodeString(res.SHA256); !bytes.Equal(got, want) {
		s.data.Discard(res.SHA256)
		return unauthorized("bad-digest", "Content-Digest does not match the uploaded data (tampered or truncated upload)")
	}
	return c.JSON(http.StatusCreated, UploadResponse{SHA256: res.SHA256, Rows: res.Rows})
}

// holdsFor refuses an agency's data on a node its organisation does not
// operate (the state machine refuses the registration too; refusing the
// upload keeps the raw records off that machine in the first place).
func (s *Server) holdsFor(acc policies.Account) error {
	self, _ := s.state.Account(policies.Address(s.key.Address()))
	if acc.Org != "" && acc.Org == self.Org {
		return nil
	}
	var own []string
	for _, a := range s.state.Accounts() {
		if acc.Org != "" && a.Org == acc.Org && s.state.Can(a.Address, policies.PermNode) {
			own = append(own, a.Name)
		}
	}
	where := "your organisation operates no node: ask the consortium's admin"
	if len(own) > 0 {
		where = "upload to your organisation's node: " + strings.Join(own, ", ")
	}
	return forbidden(fmt.Sprintf("this node (%s) is operated by %q, not by your organisation %q; an agency's data goes only to its own node (%s)", s.node.ID(), self.Org, acc.Org, where))
}

func (s *Server) registerDataset(c echo.Context) error {
	var d policies.DatasetDoc
	if err := decodeStrict(callerOf(c).body, &d, "dataset"); err != nil {
		return err
	}
	if rc, ok := s.repeated(c); ok {
		return c.JSON(http.StatusCreated, WriteResponse{Kind: policies.KindDatasetRegister, Index: rc.Index, ID: d.Name})
	}
	if err := d.Schema.Validate(); err != nil {
		return badRequest("bad-schema", err.Error())
	}
	if s.data == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-data-store", detail: "this node keeps no datasets"}
	}
	if err := s.holdsFor(callerOf(c).account); err != nil {
		return err
	}
	if _, taken := s.state.Dataset(d.Name); taken {
		s.data.Discard(d.SHA256) // never to be registered: not left staged
		return &problemError{status: http.StatusConflict, code: "conflict", detail: fmt.Sprintf("dataset %q is already registered", d.Name)}
	}
	schema, rows, ok := s.data.Staged(d.SHA256)
	if !ok {
		return &problemError{status: http.StatusConflict, code: "no-upload", detail: fmt.Sprintf("no upload with sha256 %s on this node: upload the data here first (POST /v1/uploads)", clip(d.SHA256))}
	}
	a, _ := json.Marshal(schema)
	b, _ := json.Marshal(d.Schema)
	if !bytes.Equal(a, b) || rows != d.Rows {
		s.data.Discard(d.SHA256)
		return badRequest("upload-mismatch", "the schema or row count differs from the upload's")
	}
	rc, err := s.relay(c, policies.KindDatasetRegister, nil)
	if err != nil {
		discardRefused(s.data, d.SHA256, err)
		return err
	}
	if err := s.data.Bind(d.SHA256, d.Name); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, WriteResponse{Kind: policies.KindDatasetRegister, Index: rc.Index, ID: d.Name})
}

func (s *Server) publishPolicy(c echo.Context) error {
	who := callerOf(c)
	p, err := policies.ParsePolicy(who.body)
	if err != nil {
		return badRequest("bad-policy", err.Error())
	}
	// The limits are checked before the ledger (README: 422 beyond-limits);
	// the dataset's existence and owner only by the state machine, whose
	// typed refusal answers 404 or 403.
	if err := s.state.Limits().CheckPolicy(p); err != nil {
		return &problemError{status: http.StatusUnprocessableEntity, code: "beyond-limits", detail: err.Error()}
	}
	rc, err := s.relay(c, policies.KindPolicyPublish, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, WriteResponse{Kind: policies.KindPolicyPublish, Index: rc.Index, ID: fmt.Sprintf("pol-%d", rc.Index)})
}

// JobResponse is a job as the API shows it.
type JobResponse struct {
	Job          string   `json:"job"`
	Status       string   `json:"status"`
	Reason       string   `json:"reason,omitempty"`
	Dataset      string   `json:"dataset"`
	Mode         string   `json:"mode"`
	Purpose      string   `json:"purpose"`
	Query        string   `json:"query"`
	Requester    string   `json:"requester"`
	Policy       string   `json:"policy,omitempty"`
	Epsilon      float64  `json:"epsilon"`
	Approvals    []string `json:"approvals,omitempty"`
	Needed       int      `json:"approvals_needed,omitempty"`
	Submitted    string   `json:"submitted"`
	ResultSHA256 string   `json:"result_sha256,omitempty"`
	// Datasets lists every dataset a join reads; Runner is the node that
	// runs the job; Flows are the columns the job moved (joins).
	Datasets []string           `json:"datasets,omitempty"`
	Runner   string             `json:"runner,omitempty"`
	Flows    []policies.JobFlow `json:"flows,omitempty"`
	// Charge is what the job's authorisation debited: whose budget, on
	// which populations of data subjects.
	Charge *policies.Charge `json:"charge,omitempty"`
	// List is a list join's list (its size, never its ids) and the job key
	// sealed to the requester's ephemeral key (KeyFrom sealed it).
	List    *policies.JobList `json:"list,omitempty"`
	KeyFrom string            `json:"key_from,omitempty"`
}

func jobResponse(j policies.Job) JobResponse {
	r := JobResponse{Job: j.ID, Status: j.Status, Reason: j.Reason, Dataset: j.Dataset, Mode: j.Mode, Purpose: j.Purpose,
		Query: j.Query, Requester: j.Requester.String(), Policy: j.Policy, Epsilon: j.Epsilon, Needed: j.Needed,
		Submitted: j.Submitted.Format(time.RFC3339), ResultSHA256: j.ResultHash, Charge: j.Charge}
	for _, a := range j.Approvals {
		r.Approvals = append(r.Approvals, a.String())
	}
	if j.IsJoin() {
		r.Datasets, r.Flows = j.Plan.Datasets(j.Dataset), j.Flows
	}
	if j.List != nil {
		r.List = j.List
		if j.KeyFrom != (policies.Address{}) {
			r.KeyFrom = j.KeyFrom.String()
		}
	}
	if j.Runner != (policies.Address{}) {
		r.Runner = j.Runner.String()
	}
	return r
}

func (s *Server) submitJob(c echo.Context) error {
	var d policies.JobDoc
	if err := decodeStrict(callerOf(c).body, &d, "job must be {\"query\", \"mode\", \"purpose\"}"); err != nil {
		return err
	}
	if d.Mode != policies.ModeMasked && d.Mode != policies.ModeHE {
		return badRequest("bad-mode", fmt.Sprintf("mode must be masked or he, got %q", clip(d.Mode)))
	}
	q, err := sandbox.ParseQuery(d.Query)
	if err != nil {
		return err // 422 bad-query, with the position
	}
	// A query that cannot run is refused here, before the ledger: nothing
	// is recorded and no budget is spent. Only policy decisions (purpose,
	// grantee, budget, mode) are committed as rejected jobs. A join is
	// checked whole: its own rules, every dataset's schema, the
	// consortium's size, and that some policy of each dataset allows the
	// join (the state machine judges the policies again, fully).
	if d.List != nil || len(q.Joins) > 0 {
		env := s.joinEnv()
		if d.List != nil {
			if err := s.listEnv(d.List, d.Mode, q, &env); err != nil {
				return err
			}
		}
		if err := sandbox.CheckJoin(q, env, d.Mode); err != nil {
			return err
		}
	} else if err := checkQuery(s.state, q, d.Mode); err != nil {
		return err
	}
	rc, err := s.relay(c, policies.KindJobSubmit, policies.JobExtra{Dataset: q.From, Plan: q.Plan()})
	if err != nil {
		return err
	}
	j, ok := s.state.Job(fmt.Sprintf("job-%d", rc.Index))
	if !ok {
		return fmt.Errorf("api: job of entry %d not in state", rc.Index)
	}
	return c.JSON(http.StatusCreated, jobResponse(j))
}

// joinEnv is what sandbox.CheckJoin needs from the committed state.
func (s *Server) joinEnv() sandbox.JoinEnv {
	env := sandbox.JoinEnv{Schemas: map[string]*policies.Schema{}}
	for _, d := range s.state.Datasets() {
		env.Schemas[d.Name] = &d.Schema
	}
	for _, a := range s.state.Accounts() {
		if a.PublicKey != nil && s.state.Can(a.Address, policies.PermNode) {
			env.Nodes++
		}
	}
	pols := s.state.Policies()
	env.Allows = func(ds, other string) bool {
		for _, p := range pols {
			if p.Dataset == ds && !p.Revoked && p.Join.Allows(other) {
				return true
			}
		}
		return false
	}
	return env
}

func (s *Server) decideJob(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		j, ok := s.state.Job(c.Param("id"))
		if !ok {
			return notFound(fmt.Sprintf("no job %q", clip(c.Param("id"))))
		}
		if _, ok := s.repeated(c); ok {
			return c.JSON(http.StatusOK, jobResponse(j))
		}
		// Who may decide and when is the state machine's rule: its typed
		// refusal answers 403 or 409.
		if _, err := s.relay(c, kind, nil); err != nil {
			return err
		}
		j, _ = s.state.Job(j.ID)
		return c.JSON(http.StatusOK, jobResponse(j))
	}
}

// checkQuery refuses a query that cannot run whatever any policy says: an
// unknown dataset, then sandbox.CheckQuery (unknown columns, row-level
// outputs, column-class rules, joins not executed yet, and in he mode what
// the encrypted engine cannot evaluate). The errors carry the rule and the
// position in the query.
func checkQuery(st State, q *sandbox.Query, mode string) error {
	ds, ok := st.Dataset(q.From)
	if !ok {
		return &sandbox.RefusalError{Col: fromColumn(q.Source, q.From), Rule: "unknown-dataset",
			Msg: fmt.Sprintf("unknown dataset %q (sandboxctl dataset list shows the catalogue)", clip(q.From))}
	}
	return sandbox.CheckQuery(q, &ds.Schema, mode)
}

// fromColumn is the 1-based character column of the dataset's name after
// FROM in a query's text (0 if it cannot be found).
func fromColumn(src, name string) int {
	low := strings.ToLower(src)
	i := strings.Index(low, "from")
	if i < 0 {
		return 0
	}
	j := strings.Index(low[i:], strings.ToLower(name))
	if j < 0 {
		return 0
	}
	return utf8.RuneCountInString(src[:i+j]) + 1
}

func (s *Server) getLimits(c echo.Context) error {
	return c.JSON(http.StatusOK, s.state.Limits())
}

func (s *Server) setLimits(c echo.Context) error {
	var l policies.Limits
	if err := decodeStrict(callerOf(c).body, &l, "limits must be {\"max_epsilon_per_query\", \"max_epsilon_budget\", \"max_delta\"}"); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return badRequest("bad-limits", err.Error())
	}
	rc, err := s.relay(c, policies.KindLimitsSet, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, WriteResponse{Kind: policies.KindLimitsSet, Index: rc.Index})
}
