package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

// Errors a caller may test with errors.Is.
var (
	// ErrNoKey is the answer, before any request, to a call that acts as
	// an account on a Client without a key.
	ErrNoKey = errors.New("this command acts as an account: set --key FILE or SANDBOX_KEY (make one with: sandboxctl key new --out FILE)")
	// ErrNotFound matches a node's 404 answer.
	ErrNotFound = errors.New("not found")
)

// Config says which node to call and as whom.
type Config struct {
	// Server is the node's base URL (http://127.0.0.1:8080).
	Server string
	// KeyFile is the account's key file (sandboxctl key new); empty for a
	// client that only calls the unsigned endpoints. A key file that others
	// may read is refused, as ssh refuses one.
	KeyFile string
	// CAFile is a PEM file of the CA that signed https nodes' certificates
	// (sandboxctl tls ca); empty for the system's roots.
	CAFile string
	// Timeout bounds each request but uploads (their context bounds them).
	Timeout time.Duration
}

// DefaultConfig is a Config for a node on this machine, with no key.
func DefaultConfig() Config {
	return Config{Server: "http://127.0.0.1:8080", Timeout: 60 * time.Second}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("client: server %q is not an http:// or https:// URL", c.Server)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("client: negative timeout %s", c.Timeout)
	}
	return nil
}

// Client calls one node's API.
type Client struct {
	base string
	http *http.Client
	key  *chain.Key
	// setupErr is a key or CA file that could not be read: every call
	// returns it, so a command-line tool reports it at its first request.
	setupErr error
}

// New returns a client for cfg, which it does not check (Validate does). A
// key or CA file that cannot be read makes every call fail with that error
// (Err reports it at once), so that a command that needs no request (help)
// still works.
func New(cfg Config) *Client {
	c := &Client{base: strings.TrimRight(cfg.Server, "/"), http: &http.Client{Timeout: cfg.Timeout}}
	if cfg.KeyFile != "" {
		c.key, c.setupErr = LoadKeyFile(cfg.KeyFile)
	}
	if cfg.CAFile != "" && c.setupErr == nil {
		var pool *x509.CertPool
		if pool, c.setupErr = loadCA(cfg.CAFile); c.setupErr == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			c.http.Transport = t
		}
	}
	return c
}

// Err is the error every call of c returns, if its key or CA file could
// not be read.
func (c *Client) Err() error { return c.setupErr }

// Server is the node's base URL.
func (c *Client) Server() string { return c.base }

// Signer returns the account key, or why there is none.
func (c *Client) Signer() (*chain.Key, error) {
	if c.setupErr != nil {
		return nil, c.setupErr
	}
	if c.key == nil {
		return nil, ErrNoKey
	}
	return c.key, nil
}

// LoadKeyFile reads a private key file, refusing one that others may read
// (as ssh does): a key anyone on the machine can copy is not the
// account's alone.
func LoadKeyFile(path string) (*chain.Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: the private key file may be read by others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	return chain.LoadKeyFile(path)
}

// loadCA reads a PEM file of CA certificates.
func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// problem is the server's RFC 9457 error body.
type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Do sends a request to path (under the base URL, query included) and
// decodes a JSON answer into out (a *json.RawMessage takes the bytes as
// they came). body is marshalled to JSON unless it is a json.RawMessage.
// A problem answer becomes an error that quotes the node's reason (a 404
// matches ErrNotFound). A request the node turned away for now (429, or
// 503 for a read) is signed anew and sent again after the Retry-After it
// asked for, a few times.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if raw, ok := body.(json.RawMessage); ok {
			b = raw
		} else if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	if c.setupErr != nil {
		return c.setupErr
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, method, path, b, body != nil)
		if err != nil {
			return err
		}
		wait, again := retryAfter(resp, method)
		if again && attempt < 4 {
			resp.Body.Close()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		defer resp.Body.Close()
		return decodeAnswer(resp, method, path, out)
	}
}

// send signs and sends one request.
func (c *Client) send(ctx context.Context, method, path string, b []byte, hasBody bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key == nil && !unsigned(path) {
		return nil, ErrNoKey
	}
	if c.key != nil && !unsigned(path) {
		if err := audit.SignRequestKey(req, b, c.key); err != nil {
			return nil, err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, unreachable(c.base, err)
	}
	return resp, nil
}

// unsigned reports whether a path is served without a signature.
func unsigned(path string) bool {
	p, _, _ := strings.Cut(path, "?")
	return p == "/v1/health" || p == "/v1/openapi.json"
}

// unreachable says a node could not be reached, without the request's URL
// (an upload's carries the whole schema).
func unreachable(base string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach %s: %w", base, err)
}

// shortPath is a request path as error messages quote it: a long query
// (an upload's schema) is left out.
func shortPath(path string) string {
	if p, q, ok := strings.Cut(path, "?"); ok && len(q) > 60 {
		return p + "?..."
	}
	return path
}

// retryAfter says whether an answer asks to come back later, and when: a
// rate limit (the request was not acted on), or unavailability for a read
// (a write may have happened; the caller decides). At most 10 seconds.
func retryAfter(resp *http.Response, method string) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && (resp.StatusCode != http.StatusServiceUnavailable || method != http.MethodGet) {
		return 0, false
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 || secs > 10 {
		return 0, false
	}
	return time.Duration(max(secs, 1)) * time.Second, true
}

// Upload streams a file to path, signed with the file's SHA-256 (computed
// first, in a streaming pass). progress, when not nil, is called with the
// bytes sent so far and the file's size: once with 0 before sending, then
// as the body is read.
func (c *Client) Upload(ctx context.Context, path, file, contentType string, progress func(sent, size int64), out any) error {
	if c.setupErr != nil {
		return c.setupErr
	}
	if c.key == nil {
		return ErrNoKey
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	progress(0, size)
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, &countingReader{r: f, size: size, progress: progress})
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", contentType)
	// The node checks the request (signature, permission, name, schema)
	// before it reads the data; a refusal then comes before any is sent.
	req.Header.Set("Expect", "100-continue")
	if err := audit.SignStreamedRequestKey(req, h.Sum(nil), c.key); err != nil {
		return err
	}
	hc := *c.http
	hc.Timeout = 0 // large uploads take their time; ctx bounds them
	resp, err := hc.Do(req)
	if err != nil {
		return unreachable(c.base, err)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, "POST", path, out)
}

// countingReader reports what is read through it.
type countingReader struct {
	r        io.Reader
	sent     int64
	size     int64
	progress func(sent, size int64)
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.sent += int64(n)
	r.progress(r.sent, r.size)
	return n, err
}

func decodeAnswer(resp *http.Response, method, path string, out any) error {
	path = shortPath(path)
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var p problem
		var err error
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			err = fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, p.Code, p.Detail)
		} else {
			err = fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return &StatusError{Status: resp.StatusCode, Code: p.Code, err: err}
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], b...)
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad JSON answer: %w", method, path, err)
		}
	}
	return nil
}

// StatusError is a node's error answer: its HTTP status and the problem's
// code (empty when the body was not problem+json). A 404 matches
// ErrNotFound.
type StatusError struct {
	Status int
	Code   string
	err    error
}

func (e *StatusError) Error() string { return e.err.Error() }
func (e *StatusError) Is(target error) bool {
	return e.Status == http.StatusNotFound && target == ErrNotFound
}
