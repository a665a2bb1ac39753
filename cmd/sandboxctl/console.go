package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// The console (sandboxctl console) is a web page served by sandboxctl on
// the user's own machine. The browser talks only to sandboxctl's local
// JSON endpoints; sandboxctl signs every request to the consortium with
// the key file, decrypts he results and verifies the ledger itself. The key
// never leaves this process: not to the browser, not to a node.
//
// Who may call the local endpoints. Any page the user has open (another
// site, another local service) can make the browser send requests to
// 127.0.0.1, and a DNS-rebinding page can even make them look same-origin.
// Three checks stop that, each on every request:
//
//   - Host must be the address the console listens on (127.0.0.1:P or
//     localhost:P): a rebinding page's requests carry its own host name.
//   - Origin, when the browser sends one, must be the console's own, and
//     Sec-Fetch-Site, when sent, "same-origin" (or "none" for a typed URL).
//   - /api/ requests must carry the per-run token (32 random bytes, printed
//     in the URL's fragment at start) in the X-Console-Token header. A
//     custom header cannot be sent cross-origin without a CORS preflight,
//     which the console never grants; a cookie would not do, since
//     browsers count every port of 127.0.0.1 as the same site. The token
//     sits in the fragment, which browsers never send to a server or put
//     in a Referer, and the page moves it to sessionStorage and off the
//     address bar.
//
// The static page itself (HTML, CSS, JS, embedded in the binary) holds no
// data and is served without the token.

//go:embed console
var consoleFiles embed.FS

// consoleConfig is what cmdConsole reads from its flags.
type consoleConfig struct {
	listen   string
	anywhere bool
	trust    string // checkpoint keys for verification and proofs
	state    string // ledger verify --state
}

type console struct {
	ctx   context.Context // the console's run: verifications stop with it
	g     *globals
	c     *client.Client
	cfg   consoleConfig
	me    api.AccountResponse
	token []byte
	hosts map[string]bool // Host headers accepted; nil: any (--listen-anywhere)
	files http.Handler

	mu     sync.Mutex
	names  map[string]api.AccountResponse // account look-ups, by address
	verify *verifyRun
}

func cmdConsole(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	var cfg consoleConfig
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8090", "address to serve the console on (loopback only unless --listen-anywhere)")
	fs.BoolVar(&cfg.anywhere, "listen-anywhere", false, "allow --listen on a non-loopback address (anyone who can reach it and has the URL acts as this account)")
	fs.StringVar(&cfg.trust, "trust", "", "file of trusted checkpoint keys for verification and proofs (default as ledger verify)")
	fs.StringVar(&cfg.state, "state", "", "where ledger verification keeps the last verified checkpoint (default as ledger verify)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 0, "no arguments"); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(cfg.listen)
	if err != nil {
		return fmt.Errorf("console: --listen %q: %w", cfg.listen, err)
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	if !loopback && !cfg.anywhere {
		return fmt.Errorf("console: --listen %s is not a loopback address: anyone who reaches it with the URL acts as your account; add --listen-anywhere to mean it", cfg.listen)
	}
	k, err := loadKey(g)
	if err != nil {
		return err
	}
	c := newClient(g)
	con := &console{ctx: ctx, g: g, c: c, cfg: cfg, names: map[string]api.AccountResponse{}, verify: &verifyRun{kept: cfg.state}}
	if err := c.Do(ctx, "GET", "/v1/accounts/"+k.Address().String(), nil, &con.me); err != nil {
		return fmt.Errorf("console: reading this key's account: %w", err)
	}
	if con.verify.kept == "" {
		// Where ledger verify keeps the last verified checkpoint by
		// default: a file per origin (the node's checkpoint names it).
		if cp, err := c.Checkpoint(ctx, nil); err == nil {
			con.verify.kept, _ = audit.LastVerifiedPath(cp.Origin)
		}
	}
	con.token = make([]byte, 32)
	if _, err := rand.Read(con.token); err != nil {
		return err
	}
	con.token = []byte(hex.EncodeToString(con.token))
	sub, err := iofs.Sub(consoleFiles, "console")
	if err != nil {
		return err
	}
	con.files = http.FileServerFS(sub)

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if loopback {
		con.hosts = map[string]bool{ln.Addr().String(): true, net.JoinHostPort("localhost", strconv.Itoa(addr.Port)): true}
	} else {
		fmt.Fprintf(g.stderr, "WARNING: the console listens on %s, not only on this machine: anyone who can reach it and learns the URL acts as account %s\n", ln.Addr(), con.me.Address)
	}
	urlHost := ln.Addr().String()
	if !loopback && addr.IP.IsUnspecified() {
		urlHost = net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
	}
	srv := &http.Server{Handler: con, ReadHeaderTimeout: 10 * time.Second}
	url := fmt.Sprintf("http://%s/#token=%s", urlHost, con.token)
	if g.json {
		if err := printJSON(g.stdout, map[string]any{"url": url, "account": con.me}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stdout, "console for %s (%s, roles %s) at %s\n", con.me.Address, orDash(con.me.Name), strings.Join(con.me.Roles, ","), url)
		fmt.Fprintln(g.stdout, "open that URL in a browser on this machine; Ctrl-C stops the console")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	con.verify.wait(sctx)
	return srv.Shutdown(sctx)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ServeHTTP checks where a request comes from, then routes it.
func (con *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if con.hosts != nil && !con.hosts[r.Host] {
		consoleError(w, http.StatusMisdirectedRequest, fmt.Sprintf("console: host %q is not this console's address", chain.Clip(r.Host, 64)))
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		consoleError(w, http.StatusForbidden, fmt.Sprintf("console: requests from origin %q are refused", chain.Clip(o, 64)))
		return
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		consoleError(w, http.StatusForbidden, "console: cross-site requests are refused (Sec-Fetch-Site "+chain.Clip(s, 64)+")")
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			consoleError(w, http.StatusMethodNotAllowed, "console: static files are read-only")
			return
		}
		con.files.ServeHTTP(w, r)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Console-Token")), con.token) != 1 {
		consoleError(w, http.StatusUnauthorized, "console: missing or wrong X-Console-Token (open the URL sandboxctl console printed)")
		return
	}
	con.route(w, r)
}

var hexAddress = regexp.MustCompile(`\b[0-9a-f]{40}\b`)

var jobID = regexp.MustCompile(`^job-[0-9]{1,19}$`)

var jobPath = regexp.MustCompile(`^/api/jobs/(job-[0-9]{1,19})(/result|/approve|/reject)?$`)

func (con *console) route(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := r.URL.Path
	var err error
	switch {
	case p == "/api/me" && r.Method == "GET":
		err = writeJSON(w, map[string]any{"account": con.me, "server": con.c.Server()})
	case p == "/api/datasets" && r.Method == "GET":
		err = con.proxy(ctx, w, "/v1/datasets")
	case p == "/api/policies" && r.Method == "GET":
		err = con.proxy(ctx, w, "/v1/policies")
	case p == "/api/checkpoint" && r.Method == "GET":
		err = con.proxy(ctx, w, "/v1/ledger/checkpoint")
	case p == "/api/budgets" && r.Method == "GET":
		err = con.proxy(ctx, w, "/v1/budgets")
	case p == "/api/he" && r.Method == "GET":
		err = con.proxy(ctx, w, "/v1/he")
	case p == "/api/jobs" && r.Method == "GET":
		err = con.listJobs(ctx, w)
	case p == "/api/jobs" && r.Method == "POST":
		err = con.submitJob(ctx, w, r)
	case p == "/api/verify" && r.Method == "POST":
		err = con.startVerify(w, r)
	case p == "/api/verify" && r.Method == "GET":
		err = writeJSON(w, con.verify.status())
	case p == "/api/verify/report" && r.Method == "GET":
		err = con.verify.writeHTML(w)
	case p == "/api/proof" && r.Method == "GET":
		err = con.proof(ctx, w, r)
	default:
		m := jobPath.FindStringSubmatch(p)
		switch {
		case m == nil:
			consoleError(w, http.StatusNotFound, fmt.Sprintf("console: no endpoint %s %s", r.Method, chain.Clip(p, 64)))
			return
		case m[2] == "" && r.Method == "GET":
			err = con.proxy(ctx, w, "/v1/jobs/"+m[1])
		case m[2] == "/result" && r.Method == "GET":
			err = con.result(ctx, w, m[1])
		case m[2] == "/approve" && r.Method == "POST":
			err = con.decide(ctx, w, r, m[1], "approve")
		case m[2] == "/reject" && r.Method == "POST":
			err = con.decide(ctx, w, r, m[1], "reject")
		default:
			consoleError(w, http.StatusMethodNotAllowed, fmt.Sprintf("console: %s not allowed on %s", r.Method, chain.Clip(p, 64)))
			return
		}
	}
	if err != nil {
		var be badInput
		if errors.As(err, &be) {
			consoleError(w, http.StatusBadRequest, be.Error())
			return
		}
		// The node's answer (a refusal with its rule, or why it could not
		// be reached) is the user's to read.
		consoleError(w, http.StatusBadGateway, oneLine(err.Error()))
	}
}

// badInput is a request the console itself refuses (400).
type badInput string

func (b badInput) Error() string { return string(b) }

func consoleError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}

// proxy answers with the node's JSON for a signed GET of path.
func (con *console) proxy(ctx context.Context, w http.ResponseWriter, path string) error {
	var raw json.RawMessage
	if err := con.c.Do(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(raw)
	return err
}

// account looks an account up once per run (names and organisations do
// not change often; a restart refreshes them).
func (con *console) account(ctx context.Context, addr string) api.AccountResponse {
	con.mu.Lock()
	a, ok := con.names[addr]
	con.mu.Unlock()
	if ok {
		return a
	}
	if err := con.c.Do(ctx, "GET", "/v1/accounts/"+addr, nil, &a); err != nil {
		return api.AccountResponse{Address: addr}
	}
	con.mu.Lock()
	con.names[addr] = a
	con.mu.Unlock()
	return a
}

// consoleJob is a job with its requester's and approvers' names.
type consoleJob struct {
	api.JobResponse
	RequesterName string   `json:"requester_name,omitempty"`
	RequesterOrg  string   `json:"requester_org,omitempty"`
	ApproverNames []string `json:"approver_names,omitempty"`
	// NodeNames names the nodes of a join's runner and flows (address to
	// "name (organisation)").
	NodeNames map[string]string `json:"node_names,omitempty"`
}

func (con *console) listJobs(ctx context.Context, w http.ResponseWriter) error {
	var out struct {
		Jobs []api.JobResponse `json:"jobs"`
	}
	if err := con.c.Do(ctx, "GET", "/v1/jobs", nil, &out); err != nil {
		return err
	}
	jobs := make([]consoleJob, len(out.Jobs))
	for i, j := range out.Jobs {
		a := con.account(ctx, j.Requester)
		jobs[i] = consoleJob{JobResponse: j, RequesterName: a.Name, RequesterOrg: a.Org}
		// A rejection names its agency by address: give its name too.
		jobs[i].Reason = hexAddress.ReplaceAllStringFunc(j.Reason, func(h string) string {
			if n := con.account(ctx, h); n.Name != "" {
				return n.Name + " (" + h[:10] + ")"
			}
			return h
		})
		for _, addr := range joinNodes(j) {
			if jobs[i].NodeNames == nil {
				jobs[i].NodeNames = map[string]string{}
			}
			jobs[i].NodeNames[addr] = label(con.account(ctx, addr))
		}
		for _, ap := range j.Approvals {
			n := con.account(ctx, ap).Name
			if n == "" {
				n = ap
			}
			jobs[i].ApproverNames = append(jobs[i].ApproverNames, n)
		}
	}
	return writeJSON(w, map[string]any{"jobs": jobs})
}

// joinNodes lists the nodes a join job names: its runner and its flows'
// ends.
func joinNodes(j api.JobResponse) []string {
	var out []string
	if j.Runner != "" {
		out = append(out, j.Runner)
	}
	for _, f := range j.Flows {
		out = append(out, f.From.String(), f.To.String())
	}
	return out
}

// label is an account's name and organisation, or its address.
func label(a api.AccountResponse) string {
	switch {
	case a.Name != "" && a.Org != "" && a.Org != a.Name:
		return a.Name + " (" + a.Org + ")"
	case a.Name != "":
		return a.Name
	}
	return a.Address
}

// readBody decodes a small JSON request body strictly.
func readBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badInput("console: request body: " + err.Error())
	}
	return nil
}

// submitJob submits a job, masked unless the page asks for he; for an he
// job, sandboxctl first registers the account's CKKS public key (derived
// from the key file, as job submit does), so that the result can be
// encrypted to it and decrypted here.
func (con *console) submitJob(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Query   string `json:"query"`
		Purpose string `json:"purpose"`
		Mode    string `json:"mode"`
	}
	if err := readBody(r, &in); err != nil {
		return err
	}
	if strings.TrimSpace(in.Query) == "" {
		return badInput("console: the query is empty")
	}
	switch in.Mode {
	case "", policies.ModeMasked:
		in.Mode = policies.ModeMasked
	case policies.ModeHE:
		if err := ensureHEKey(ctx, con.c); err != nil {
			return err
		}
	default:
		return badInput(fmt.Sprintf("console: mode %q is neither masked nor he", chain.Clip(in.Mode, 64)))
	}
	var j api.JobResponse
	if err := con.c.Do(ctx, "POST", "/v1/jobs", policies.JobDoc{Query: in.Query, Mode: in.Mode, Purpose: in.Purpose}, &j); err != nil {
		return err
	}
	return writeJSON(w, j)
}

func (con *console) decide(ctx context.Context, w http.ResponseWriter, r *http.Request, id, what string) error {
	var body any
	if what == "reject" {
		var in struct {
			Reason string `json:"reason"`
		}
		if err := readBody(r, &in); err != nil {
			return err
		}
		if strings.TrimSpace(in.Reason) == "" {
			return badInput("console: a rejection needs a reason (it is recorded on the ledger)")
		}
		body = map[string]string{"reason": in.Reason}
	}
	var j api.JobResponse
	if err := con.c.Do(ctx, "POST", "/v1/jobs/"+id+"/"+what, body, &j); err != nil {
		return err
	}
	return writeJSON(w, j)
}

// result fetches a result with job result's own code (in this process):
// an he result is decrypted here, with the key file's seed, and the
// browser gets only the plaintext result, with whatever else it carries
// (noise intervals and the like).
func (con *console) result(ctx context.Context, w http.ResponseWriter, id string) error {
	raw, _, err := fetchResult(ctx, con.c, id)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(raw)
	return err
}

// proof fetches and verifies an entry's (or a job's entries') inclusion
// proof with ledger proof's own code.
func (con *console) proof(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	args := con.baseArgs()
	args = append(args, "--json", "ledger", "proof")
	if con.cfg.trust != "" {
		args = append(args, "--trust", con.cfg.trust)
	}
	q := r.URL.Query()
	switch {
	case q.Get("job") != "":
		if !jobID.MatchString(q.Get("job")) {
			return badInput(fmt.Sprintf("console: %q is not a job id (job-N)", chain.Clip(q.Get("job"), 64)))
		}
		args = append(args, "--job", q.Get("job"))
	case q.Get("index") != "":
		n, err := strconv.ParseUint(q.Get("index"), 10, 63)
		if err != nil {
			return badInput(fmt.Sprintf("console: entry index %q is not a non-negative integer", chain.Clip(q.Get("index"), 64)))
		}
		args = append(args, "--index", strconv.FormatUint(n, 10))
	default:
		return badInput("console: give index=I or job=job-N")
	}
	var out strings.Builder
	if err := run(ctx, args, &out, io.Discard); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := io.WriteString(w, out.String())
	return err
}

// baseArgs are the global flags the console was started with, for the
// commands it runs in-process.
func (con *console) baseArgs() []string {
	args := []string{"--server", con.g.server, "--key", con.g.key}
	if con.g.ca != "" {
		args = append(args, "--ca", con.g.ca)
	}
	return args
}
