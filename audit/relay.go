package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
	"github.com/yaronf/httpsign"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// An account acts by sending a request signed with HTTP Message Signatures
// (RFC 9421). The node that receives it relays it to the ledger: the entry
// is signed by the node and carries the account's signed request verbatim,
// so every node and every auditor re-checks the account's own signature
// and derives the action from the request, instead of trusting the node.

// Relay is the payload of an entry a node relays for an account.
type Relay struct {
	Actor   string          `json:"actor"`
	Request SignedRequest   `json:"request"`
	Extra   json.RawMessage `json:"extra,omitempty"`
}

// SignedRequest is what is kept of an HTTP request: enough to verify its
// signature again.
type SignedRequest struct {
	Method         string `json:"method"`
	URI            string `json:"uri"` // the target URI as signed
	ContentType    string `json:"content_type,omitempty"`
	ContentDigest  string `json:"content_digest,omitempty"`
	SignatureInput string `json:"signature_input"`
	Signature      string `json:"signature"`
	// Headers holds any other header fields the signature covers, so that
	// a client's signature over more than the required components still
	// verifies from the ledger.
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"body,omitempty"`
}

// Route ties an API endpoint that changes state to its entry kind.
type Route struct {
	Kind    string
	Method  string
	Pattern string // path with {id} for one parameter
	// Doc builds the action document from the path parameter and body;
	// nil means the body is the document.
	Doc func(id string, body []byte) ([]byte, error)
}

func withJob(id string, body []byte) ([]byte, error) {
	d := policies.JobDecisionDoc{Job: id}
	if len(bytes.TrimSpace(body)) > 0 {
		var r struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("%w: body must be {\"reason\": \"...\"}: %v", policies.ErrInvalid, err)
		}
		d.Reason = r.Reason
	}
	return json.Marshal(d)
}

// withJobList: the body of POST /v1/jobs/{id}/list, with the path's job.
func withJobList(id string, body []byte) ([]byte, error) {
	var d policies.JobListDoc
	if err := policies.DecodeStrict(body, &d); err != nil {
		return nil, fmt.Errorf("%w: body must be {\"to\", \"rows\", \"sha256\"}: %v", policies.ErrInvalid, err)
	}
	if d.Job != "" && d.Job != id {
		return nil, fmt.Errorf("%w: the body names job %q, the path %q", policies.ErrInvalid, clip(d.Job), clip(id))
	}
	d.Job = id
	return json.Marshal(d)
}

func withPolicy(id string, _ []byte) ([]byte, error) {
	return json.Marshal(policies.PolicyRevokeDoc{Policy: id})
}

// Routes lists every state-changing endpoint. The slice is the caller's.
func Routes() []Route { return slices.Clone(routes) }

// routes is the table behind Routes: which kinds a node relays for an
// account, and how a request becomes the document the verifier re-derives.
// Both sides read it, so nothing outside may change it.
var routes = []Route{
	{Kind: policies.KindAccountRegister, Method: http.MethodPost, Pattern: "/v1/accounts"},
	{Kind: policies.KindAccountGrant, Method: http.MethodPost, Pattern: "/v1/accounts/grants"},
	{Kind: policies.KindAccountRevoke, Method: http.MethodPost, Pattern: "/v1/accounts/revocations"},
	{Kind: policies.KindAccountRotate, Method: http.MethodPost, Pattern: "/v1/accounts/rotations"},
	{Kind: policies.KindHEKey, Method: http.MethodPost, Pattern: "/v1/accounts/hekey"},
	{Kind: policies.KindTableSet, Method: http.MethodPost, Pattern: "/v1/accounts/table"},
	{Kind: policies.KindLimitsSet, Method: http.MethodPost, Pattern: "/v1/limits"},
	{Kind: policies.KindDatasetRegister, Method: http.MethodPost, Pattern: "/v1/datasets"},
	{Kind: policies.KindPolicyPublish, Method: http.MethodPost, Pattern: "/v1/policies"},
	{Kind: policies.KindPolicyRevoke, Method: http.MethodPost, Pattern: "/v1/policies/{id}/revoke", Doc: withPolicy},
	{Kind: policies.KindJobSubmit, Method: http.MethodPost, Pattern: "/v1/jobs"},
	{Kind: policies.KindJobApprove, Method: http.MethodPost, Pattern: "/v1/jobs/{id}/approve", Doc: withJob},
	{Kind: policies.KindJobReject, Method: http.MethodPost, Pattern: "/v1/jobs/{id}/reject", Doc: withJob},
	{Kind: policies.KindJobList, Method: http.MethodPost, Pattern: "/v1/jobs/{id}/list", Doc: withJobList},
	{Kind: policies.KindPseudonymBatch, Method: http.MethodPost, Pattern: "/v1/pseudonyms/batches"},
	{Kind: policies.KindPseudonymRotate, Method: http.MethodPost, Pattern: "/v1/pseudonyms/rotations"},
	// An admin's request for a key ceremony is also its approval on the
	// ledger: every ceremony, the first included, needs one.
	{Kind: policies.KindHERotate, Method: http.MethodPost, Pattern: "/v1/he/ceremony", Doc: ceremonyApproval},
	{Kind: policies.KindPseudonymRotate, Method: http.MethodPost, Pattern: "/v1/pseudonyms/ceremony", Doc: ceremonyApproval},
}

func ceremonyApproval(string, []byte) ([]byte, error) {
	return json.Marshal(policies.HERotateDoc{Reason: "key ceremony requested by an admin"})
}

// DocumentOf derives the action document of a request relayed as kind:
// from the route of that kind whose method and path the request has.
func DocumentOf(kind, method, path string, body []byte) ([]byte, error) {
	var first *Route
	for i, r := range routes {
		if r.Kind != kind {
			continue
		}
		if first == nil {
			first = &routes[i]
		}
		if _, ok := matchPath(r.Pattern, path); ok && r.Method == method {
			return r.Document(method, path, body)
		}
	}
	if first == nil {
		return nil, fmt.Errorf("%w: entries of kind %q cannot be relayed", policies.ErrInvalid, clip(kind))
	}
	return first.Document(method, path, body)
}

// RouteFor returns the (first) route of a kind.
func RouteFor(kind string) (Route, bool) {
	for _, r := range routes {
		if r.Kind == kind {
			return r, true
		}
	}
	return Route{}, false
}

// Document derives the action document of a request to this route.
func (r Route) Document(method, path string, body []byte) ([]byte, error) {
	if method != r.Method {
		return nil, fmt.Errorf("%w: %s is %s %s, not %s", policies.ErrInvalid, r.Kind, r.Method, r.Pattern, method)
	}
	id, ok := matchPath(r.Pattern, path)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %s %s, not %s", policies.ErrInvalid, r.Kind, r.Method, r.Pattern, clip(path))
	}
	if r.Doc == nil {
		return body, nil
	}
	return r.Doc(id, body)
}

func matchPath(pattern, path string) (string, bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return "", false
	}
	id := ""
	for i := range ps {
		switch {
		case ps[i] == "{id}":
			if xs[i] == "" {
				return "", false
			}
			id = xs[i]
		case ps[i] != xs[i]:
			return "", false
		}
	}
	return id, true
}

// RequiredComponents are what a request signature must cover.
func RequiredComponents(hasBody bool) httpsign.Fields {
	f := httpsign.Headers("@method", "@target-uri")
	if hasBody {
		f.AddHeader("content-digest")
	}
	return f
}

var createdRE = regexp.MustCompile(`;created=(\d{1,12})(;|$)`)

// SignatureCreated reads the created parameter of a Signature-Input value.
func SignatureCreated(sigInput string) (time.Time, error) {
	m := createdRE.FindStringSubmatch(sigInput)
	if m == nil {
		return time.Time{}, fmt.Errorf("%w: the signature has no created parameter", policies.ErrInvalid)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return time.Unix(n, 0).UTC(), nil
}

// VerifyRequest checks a signed request with the key of the account it
// claims to be from (keyid), without any check of the clock: the caller
// compares the created time with its own notion of now (the API with the
// wall clock, the state machine with the block time). It returns the
// request's created time.
func VerifyRequest(r *http.Request, body []byte, actor policies.Address, key []byte) (time.Time, error) {
	return verifyRequest(r, body, len(body) > 0, actor, key)
}

// VerifyStreamedRequest is VerifyRequest for a body too large to hold: the
// signature must cover content-digest, and the caller checks the body
// against that digest as it streams it (ContentDigestSHA256).
func VerifyStreamedRequest(r *http.Request, actor policies.Address, key []byte) (time.Time, error) {
	if _, err := ContentDigestSHA256(r.Header.Get("Content-Digest")); err != nil {
		return time.Time{}, err
	}
	return verifyRequest(r, nil, true, actor, key)
}

// ContentDigestSHA256 reads the sha-256 member of a Content-Digest value.
func ContentDigestSHA256(v string) ([]byte, error) {
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k != "sha-256" || len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
			continue
		}
		d, err := base64.StdEncoding.DecodeString(val[1 : len(val)-1])
		if err == nil && len(d) == sha256.Size {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: a Content-Digest with sha-256 is required", ErrBadDigest)
}

func verifyRequest(r *http.Request, body []byte, hasBody bool, actor policies.Address, key []byte) (time.Time, error) {
	names, err := httpsign.RequestSignatureNames(r, false)
	if err != nil || len(names) == 0 {
		return time.Time{}, fmt.Errorf("%w: no RFC 9421 signature", ErrUnsigned)
	}
	if len(names) > 1 {
		return time.Time{}, fmt.Errorf("%w: one signature per request, got %d", ErrBadSignature, len(names))
	}
	details, err := httpsign.RequestDetails(names[0], r)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if details.KeyID != actor.String() {
		return time.Time{}, fmt.Errorf("%w: keyid %q is not the account %s", ErrBadSignature, clip(details.KeyID), actor)
	}

	if len(body) > 0 {
		rc := io.NopCloser(bytes.NewReader(body))
		if err := httpsign.ValidateContentDigestHeader(r.Header.Values("Content-Digest"), &rc, []string{httpsign.DigestSha256}); err != nil {
			return time.Time{}, fmt.Errorf("%w: content-digest: %v", ErrBadDigest, err)
		}
	}
	cfg := httpsign.NewVerifyConfig().SetVerifyCreated(false).SetKeyID(actor.String())
	v, alg, err := requestVerifier(key, cfg, RequiredComponents(hasBody))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: account %s: %v", ErrBadSignature, actor, err)
	}
	if details.Alg != "" && details.Alg != alg {
		return time.Time{}, fmt.Errorf("%w: alg %q, but account %s signs with %s", ErrBadSignature, clip(details.Alg), actor, alg)
	}
	if err := httpsign.VerifyRequest(names[0], *v, r); err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return SignatureCreated(r.Header.Get("Signature-Input"))
}

// RequestKeyID returns the account a signed request claims to be from: the
// keyid of its one signature.
func RequestKeyID(r *http.Request) (policies.Address, error) {
	names, err := httpsign.RequestSignatureNames(r, false)
	if err != nil || len(names) == 0 {
		return policies.Address{}, fmt.Errorf("%w: no RFC 9421 signature", ErrUnsigned)
	}
	if len(names) != 1 {
		return policies.Address{}, fmt.Errorf("%w: Signature-Input must carry exactly one signature", ErrBadSignature)
	}
	details, err := httpsign.RequestDetails(names[0], r)
	if err != nil {
		return policies.Address{}, fmt.Errorf("%w: cannot read the signature: %v", ErrBadSignature, err)
	}
	a, err := policies.ParseAddress(details.KeyID)
	if err != nil {
		return a, fmt.Errorf("%w: keyid must be the account's 40-hex-digit address", ErrBadSignature)
	}
	return a, nil
}

// Errors of request verification.
var (
	ErrUnsigned     = errors.New("audit: unsigned request")
	ErrBadSignature = errors.New("audit: bad request signature")
	ErrBadDigest    = errors.New("audit: content digest does not match the body")
)

// httpRequest rebuilds a request from what the ledger kept of it.
func (s *SignedRequest) httpRequest() (*http.Request, error) {
	r, err := http.NewRequest(s.Method, s.URI, bytes.NewReader(s.Body))
	if err != nil {
		return nil, fmt.Errorf("%w: relayed request: %v", policies.ErrInvalid, err)
	}
	if s.ContentType != "" {
		r.Header.Set("Content-Type", s.ContentType)
	}
	if s.ContentDigest != "" {
		r.Header.Set("Content-Digest", s.ContentDigest)
	}
	for k, vs := range s.Headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.Header.Set("Signature-Input", s.SignatureInput)
	r.Header.Set("Signature", s.Signature)
	return r, nil
}

var coveredRE = regexp.MustCompile(`^[^=]+=\(([^)]*)\)`)

// coveredHeaders lists the header fields a Signature-Input covers.
func coveredHeaders(sigInput string) []string {
	m := coveredRE.FindStringSubmatch(sigInput)
	if m == nil {
		return nil
	}
	var out []string
	for _, c := range strings.Fields(m[1]) {
		name, _, _ := strings.Cut(c, ";")
		name = strings.Trim(name, `"`)
		if name == "" || strings.HasPrefix(name, "@") {
			continue
		}
		switch http.CanonicalHeaderKey(name) {
		case "Content-Type", "Content-Digest", "Signature", "Signature-Input":
			continue // kept in their own fields
		}
		out = append(out, name)
	}
	return out
}

// CaptureRequest keeps what is needed to verify a request again.
func CaptureRequest(r *http.Request, targetURI string, body []byte) SignedRequest {
	s := SignedRequest{
		Method: r.Method, URI: targetURI, ContentType: r.Header.Get("Content-Type"),
		ContentDigest: r.Header.Get("Content-Digest"), SignatureInput: r.Header.Get("Signature-Input"),
		Signature: r.Header.Get("Signature"), Body: body,
	}
	for _, h := range coveredHeaders(s.SignatureInput) {
		if vs := r.Header.Values(h); len(vs) > 0 {
			if s.Headers == nil {
				s.Headers = map[string][]string{}
			}
			s.Headers[http.CanonicalHeaderKey(h)] = vs
		}
	}
	return s
}

// ActKey is the identity of the act a signed request performs: the
// account (keyid) and the bytes of its signature value. It does not depend
// on the signature's label (which no signature covers) nor on how the
// headers are formatted, so a request relabelled or re-spaced is the same
// act. Ed25519 signatures are deterministic and verified strictly (no
// malleable encodings), so two requests that sign the same components
// with the same created time (and nonce, where one is given) are one act,
// and a captured request cannot be turned into a second one. The caller
// has verified the signature.
func ActKey(r *http.Request) (string, error) {
	names, err := httpsign.RequestSignatureNames(r, false)
	if err != nil || len(names) != 1 {
		return "", fmt.Errorf("%w: exactly one RFC 9421 signature is needed", ErrBadSignature)
	}
	details, err := httpsign.RequestDetails(names[0], r)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	dict, err := httpsfv.UnmarshalDictionary(r.Header.Values("Signature"))
	if err != nil {
		return "", fmt.Errorf("%w: Signature header: %v", ErrBadSignature, err)
	}
	m, ok := dict.Get(names[0])
	item, isItem := m.(httpsfv.Item)
	if !ok || !isItem {
		return "", fmt.Errorf("%w: no signature value labelled %q", ErrBadSignature, clip(names[0]))
	}
	sig, ok := item.Value.([]byte)
	if !ok || len(sig) == 0 {
		return "", fmt.Errorf("%w: the signature value is not a byte sequence", ErrBadSignature)
	}
	sum := sha256.Sum256(sig)
	return "act:" + strings.ToLower(details.KeyID) + ":" + hex.EncodeToString(sum[:]), nil
}

func clip(s string) string { return chain.Clip(s, 64) }
