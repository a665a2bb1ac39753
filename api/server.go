package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// Node is what the API needs of a ledger node.
type Node interface {
	ID() string
	Leader() (id, addr string)
	Append(ctx context.Context, entry []byte) (chain.Receipt, error)
	WaitApplied(ctx context.Context, index uint64) error
	ReadBarrier(ctx context.Context) error
	Fetch(ctx context.Context, peerID, key string) ([]byte, error)
	Ledger() *chain.Ledger
	Err() error
}

// State is what the API reads of the committed domain state.
type State interface {
	Account(policies.Address) (policies.Account, bool)
	Can(policies.Address, string) bool
	Datasets() []policies.Dataset
	Dataset(name string) (policies.Dataset, bool)
	// Changed returns a channel closed when the state next moves.
	Changed() <-chan struct{}
	Policies() []policies.Policy
	Job(id string) (policies.Job, bool)
	Jobs(keep func(policies.Job) bool) []policies.Job
	Spent(requester policies.Address, dataset string) float64
	Budgets() []policies.BudgetLine
	HolderOf(policies.Address) string
	Limits() policies.Limits
	StateHash() [32]byte
	HE() (policies.HECeremony, bool)
	// Act returns the entry that applied a signed act (audit.ActKey).
	Act(key string) (uint64, bool)
	Accounts() []policies.Account
	// OwnsOneOf is the state machine's same-owner rule: a owns one of the
	// datasets j reads, or is of its owner's organisation.
	OwnsOneOf(a policies.Address, j policies.Job) bool
}

// Data is the node's dataset store (sandbox.Store).
type Data interface {
	Upload(ctx context.Context, r io.Reader, schema *policies.Schema, pk *rlwe.PublicKey, cons sandbox.Pseudonymiser) (*sandbox.IngestResult, error)
	Staged(sha string) (*policies.Schema, int64, bool)
	Discard(sha string)
	Bind(sha, name string) error
	Result(job string) ([]byte, bool)
}

// Config configures the HTTP server.
type Config struct {
	Addr string // listen address, e.g. 127.0.0.1:8080
	// PublicURL is the URL clients reach this node at (scheme://host:port).
	// Every signed request must name this node in its @target-uri, so a
	// request captured at one node is not accepted by another. Empty: the
	// listen address (where it names a host; a node listening on all
	// interfaces must say how it is reached). A loopback address also
	// answers to localhost and [::1] at the same port.
	PublicURL string
	// Aliases are further host:port names clients may reach this node by
	// (a reverse proxy's, say); signatures naming them are accepted too.
	Aliases           []string
	ReadHeaderTimeout time.Duration // bounds slow-loris clients
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	BodyLimit         int64         // bytes
	AppendTimeout     time.Duration // how long a write may wait for commit
	MaxPage           int           // most entries returned by one ledger read
	SignatureWindow   time.Duration // how far a request's created may be from now
	MaxUpload         int64         // bytes of one dataset upload
	UploadTimeout     time.Duration // how long one upload may take
	// RateLimit is how many requests per second one account may make on
	// average, RateBurst how many at once (token bucket); beyond them the
	// node answers 429 with Retry-After. 0 disables the limit.
	RateLimit float64
	RateBurst int
	// Nonces is shared with whatever else signs with the node's key.
	Nonces *chain.Nonces
	Logger *slog.Logger
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BodyLimit:         4 << 20,
		AppendTimeout:     15 * time.Second,
		MaxPage:           1000,
		SignatureWindow:   5 * time.Minute,
		MaxUpload:         16 << 30,
		UploadTimeout:     2 * time.Hour,
		RateLimit:         100,
		RateBurst:         200,
	}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("api: config: Addr is required")
	case c.MaxPage <= 0:
		return errors.New("api: config: MaxPage must be positive")
	case c.BodyLimit <= 0:
		return errors.New("api: config: BodyLimit must be positive")
	case c.SignatureWindow <= 0:
		return errors.New("api: config: SignatureWindow must be positive")
	case c.RateLimit < 0 || c.RateLimit > 0 && c.RateBurst < 1:
		return errors.New("api: config: RateLimit must be >= 0, with RateBurst >= 1 when set")
	}
	_, err := c.authorities()
	return err
}

// authorities lists the host:port forms a request's @target-uri may name
// for this node.
func (c Config) authorities() (map[string]bool, error) {
	hostport := c.Addr
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("api: config: PublicURL %q must be http(s)://host[:port]", c.PublicURL)
		}
		hostport = u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("api: config: address %q: %v", hostport, err)
	}
	ip := net.ParseIP(host)
	if host == "" || ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("api: config: the API listens on all interfaces (%s): set the public URL clients reach this node at (public_url), which their request signatures name", hostport)
	}
	out := map[string]bool{strings.ToLower(net.JoinHostPort(host, port)): true}
	if c.PublicURL != "" {
		if u, _ := url.Parse(c.PublicURL); u.Port() == "" {
			out[strings.ToLower(u.Hostname())] = true // default ports go unwritten
		}
	}
	for _, a := range c.Aliases {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("api: config: alias %q must be host:port", a)
		}
		out[strings.ToLower(a)] = true
	}
	if ip != nil && ip.IsLoopback() || strings.EqualFold(host, "localhost") {
		for _, h := range []string{"127.0.0.1", "localhost", "::1"} {
			out[net.JoinHostPort(h, port)] = true
		}
	}
	return out, nil
}

// Server serves the API of one node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   Node
	state  State
	key    *chain.Key // the node's key: it signs the entries it relays
	data   Data       // nil on a node that holds no data
	he     *HE        // nil until SetHE
	ps     *Pseudonym // nil until SetPseudonym
	lists  Lists      // nil until SetLists
	limits *rateLimits
	// hosts are the authorities (host:port) a signed @target-uri may name
	// for this node.
	hosts   map[string]bool
	metrics *metrics
	known   map[string]bool // "METHOD /echo/path" of every route
	e       *echo.Echo
	http    *http.Server
}

// New builds the server and its routes. key is the node's own key, which
// signs the ledger entries that relay accounts' signed requests; data is
// the node's dataset store (nil if it holds none).
func New(cfg Config, node Node, state State, key *chain.Key, data Data) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Nonces == nil {
		cfg.Nonces = chain.NewNonces()
	}
	hosts, err := cfg.authorities()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "api", "node", node.ID()), node: node, state: state, key: key,
		data: data, hosts: hosts, limits: newRateLimits(cfg.RateLimit, cfg.RateBurst)}
	s.metrics = newMetrics(s)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.log)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("panic in handler", "path", c.Path(), "err", err)
		return err
	}}))
	e.Use(s.requestLog)
	s.e = e
	s.known = map[string]bool{}
	for _, r := range s.Routes() {
		s.known[r.Method+" "+echoPath(r.Path)] = true
		h := r.handler
		if !r.Public {
			h = s.authenticate(r, h)
		}
		s.e.Add(r.Method, echoPath(r.Path), h)
	}
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return s, nil
}

// Route is one endpoint of the API.
type Route struct {
	Method, Path, Summary string
	// Public routes need no signature. Others need a valid signature by a
	// registered account and, if Perm is set, that permission.
	Public bool
	Perm   string
	// Stream routes read their own (large) body; the signature must
	// cover content-digest, which the handler checks as it streams.
	Stream  bool
	handler echo.HandlerFunc
}

// Routes lists every endpoint, for the router, the OpenAPI document and
// the tests that must cover all of them.
func (s *Server) Routes() []Route {
	return append([]Route{
		{Method: "GET", Path: "/v1/health", Summary: "liveness, leader and ledger size", Public: true, handler: s.health},
		{Method: "GET", Path: "/v1/openapi.json", Summary: "this API's OpenAPI 3 document", Public: true, handler: s.openapi},
		{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics (counts only, never values)", Public: true, handler: s.metricsHandler()},
		{Method: "POST", Path: "/v1/accounts", Summary: "register the signing account's own public key", handler: s.registerAccount},
		{Method: "GET", Path: "/v1/accounts/{id}", Summary: "an account's roles and organisation", handler: s.getAccount},
		{Method: "POST", Path: "/v1/accounts/grants", Summary: "grant a role (admin)", Perm: policies.PermGrant, handler: s.relayed(policies.KindAccountGrant)},
		{Method: "POST", Path: "/v1/accounts/revocations", Summary: "revoke a role (admin)", Perm: policies.PermGrant, handler: s.relayed(policies.KindAccountRevoke)},
		{Method: "POST", Path: "/v1/accounts/rotations", Summary: "rotate the signing account's key", handler: s.relayed(policies.KindAccountRotate)},
		{Method: "POST", Path: "/v1/accounts/hekey", Summary: "register the signing account's CKKS public key for its he results", handler: s.registerHEKey},
		{Method: "POST", Path: "/v1/he/ceremony", Summary: "have this node coordinate the HE key ceremony among the consortium's nodes (admin; once)", Perm: policies.PermGrant, handler: s.startCeremony},
		{Method: "GET", Path: "/v1/he", Summary: "the committed HE key ceremony: participants, threshold, key digests", handler: s.heStatus},
		{Method: "POST", Path: "/v1/accounts/table", Summary: "set a role's permissions (admin)", Perm: policies.PermGrant, handler: s.relayed(policies.KindTableSet)},
		{Method: "GET", Path: "/v1/budgets", Summary: "privacy budgets spent: the caller's organisation's, and every organisation's on the data subjects of its datasets (all of them for read-all accounts)", handler: s.listBudgets},
		{Method: "GET", Path: "/v1/limits", Summary: "the consortium-wide DP limits policies must stay within", handler: s.getLimits},
		{Method: "POST", Path: "/v1/limits", Summary: "set the consortium-wide DP limits (admin)", Perm: policies.PermGrant, handler: s.setLimits},
		{Method: "POST", Path: "/v1/uploads", Summary: "upload a dataset's CSV to this node (agency; ?schema=<base64url JSON>)", Perm: policies.PermRegisterDataset, Stream: true, handler: s.upload},
		{Method: "POST", Path: "/v1/datasets", Summary: "register an uploaded dataset (agency)", Perm: policies.PermRegisterDataset, handler: s.registerDataset},
		{Method: "GET", Path: "/v1/datasets", Summary: "the catalogue: schemas, classes, owners; never values", handler: s.listDatasets},
		{Method: "GET", Path: "/v1/datasets/{id}", Summary: "one dataset's registration", handler: s.getDataset},
		{Method: "POST", Path: "/v1/policies", Summary: "publish a policy (agency owning the dataset)", Perm: policies.PermPublishPolicy, handler: s.publishPolicy},
		{Method: "GET", Path: "/v1/policies", Summary: "the policies", handler: s.listPolicies},
		{Method: "POST", Path: "/v1/policies/{id}/revoke", Summary: "revoke a policy (its agency)", Perm: policies.PermPublishPolicy, handler: s.relayed(policies.KindPolicyRevoke)},
		{Method: "POST", Path: "/v1/jobs", Summary: "submit a job (enterprise)", Perm: policies.PermSubmitJob, handler: s.submitJob},
		{Method: "GET", Path: "/v1/jobs", Summary: "the jobs the caller may see", handler: s.listJobs},
		{Method: "GET", Path: "/v1/jobs/{id}", Summary: "a job's status", handler: s.getJob},
		{Method: "GET", Path: "/v1/jobs/{id}/result", Summary: "a completed job's result", handler: s.jobResult},
		{Method: "POST", Path: "/v1/jobs/{id}/approve", Summary: "approve a pending job (agency owning the dataset)", Perm: policies.PermApproveJob, handler: s.decideJob(policies.KindJobApprove)},
		{Method: "POST", Path: "/v1/jobs/{id}/reject", Summary: "reject a pending job (agency owning the dataset)", Perm: policies.PermApproveJob, handler: s.decideJob(policies.KindJobReject)},
		{Method: "GET", Path: "/v1/ledger/checkpoint", Summary: "latest checkpoint signed by this node", handler: s.checkpoint},
		{Method: "GET", Path: "/v1/ledger/entries", Summary: "raw signed entries [start, end), filtered by the caller's read permission", handler: s.entries},
		{Method: "POST", Path: "/v1/ledger/entries", Summary: "submit an entry signed by its author (consortium members)", Perm: policies.PermJoin, handler: s.appendEntry},
		{Method: "GET", Path: "/v1/ledger/proof/inclusion", Summary: "RFC 6962 audit path", handler: s.inclusion},
		{Method: "GET", Path: "/v1/ledger/proof/consistency", Summary: "RFC 6962 consistency proof", handler: s.consistency},
		{Method: "GET", Path: "/v1/ledger/blocks", Summary: "block headers [start, end) by height", handler: s.blocks},
		{Method: "GET", Path: "/v1/ledger/state", Summary: "entries applied and the state hash (for auditors' replay)", Perm: policies.PermReadAll, handler: s.stateHash},
		{Method: "GET", Path: "/v1/audit/access", Summary: "who used a dataset, when, for what purpose, with what result (?dataset=D)", Perm: policies.PermReadAll, handler: s.access},
	}, append(s.pseudonymRoutes(), s.listRoutes()...)...)
}

// echoPath turns /v1/jobs/{id} into Echo's /v1/jobs/:id.
func echoPath(p string) string { return strings.ReplaceAll(p, "{id}", ":id") }

// Handler returns the HTTP handler (tests use it with httptest).
func (s *Server) Handler() http.Handler { return s.e }

// Serve serves on ln until ctx ends, then shuts down gracefully, letting
// requests in flight finish for up to 10 seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// requestLog logs each request: method, route, status, latency, caller.
// Never bodies, headers or keys.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status, _, _ = statusOf(err)
		}
		route := c.Path()
		if !s.known[c.Request().Method+" "+route] {
			route = "unmatched" // bound the label values: no raw paths
		}
		s.metrics.observe(route, c.Request().Method, status, time.Since(start))
		attrs := []any{"method", c.Request().Method, "route", c.Path(), "status", status, "ms", time.Since(start).Milliseconds()}
		if a, ok := c.Get(ctxCaller).(*caller); ok {
			attrs = append(attrs, "account", a.addr.String())
		}
		s.log.Debug("request", attrs...)
		return err
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// SetHE gives the server the node's HE wiring (encrypted uploads).
func (s *Server) SetHE(h *HE) { s.he = h }
