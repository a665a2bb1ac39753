package main

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
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

// client calls a node's API, signing each request with the account key
// when it has one (RFC 9421, as CONTRACT.md asks).
type client struct {
	base     string
	http     *http.Client
	key      *chain.Key
	setupErr error     // a key or CA file that could not be read
	stderr   io.Writer // for progress bars
	keyPath  string
}

func newClient(g *globals) *client {
	c := &client{base: strings.TrimRight(g.server, "/"), http: &http.Client{Timeout: 60 * time.Second}, keyPath: g.key, stderr: g.stderr}
	if g.key != "" {
		c.key, c.setupErr = loadKeyFile(g.key)
	}
	if g.ca != "" && c.setupErr == nil {
		// A consortium's own CA (sandboxctl tls ca) for https:// nodes.
		var pool *x509.CertPool
		if pool, c.setupErr = loadCA(g.ca); c.setupErr == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			c.http.Transport = t
		}
	}
	return c
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

// do sends a request and decodes a JSON answer into out; a problem answer
// becomes an error that quotes the server's reason. A request the node
// turned away for now (429, or 503 for a read) is signed anew and sent
// again after the Retry-After it asked for, a few times.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
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
func (c *client) send(ctx context.Context, method, path string, b []byte, hasBody bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key == nil && !unsigned(path) {
		return nil, errNoKey
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

// errNoKey is the answer, before any request, to a command that needs an
// account and was given no key.
var errNoKey = errors.New("this command acts as an account: set --key FILE or SANDBOX_KEY (make one with: sandboxctl key new --out FILE)")

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

// upload streams a file to path, signed with the file's SHA-256 (computed
// first, in a streaming pass), with a progress bar labelled label.
func (c *client) upload(ctx context.Context, path, file, contentType, label string, out any) error {
	if c.setupErr != nil {
		return c.setupErr
	}
	if c.key == nil {
		return errNoKey
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
	bar := newProgress(c.stderr, label, size, true)
	defer bar.Done()
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, &progressReader{r: f, p: bar})
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
		if resp.StatusCode == http.StatusNotFound {
			return &statusError{err: err, notFound: true}
		}
		return err
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

// errNotFound matches (errors.Is) a node's 404 answer.
var errNotFound = errors.New("not found")

// statusError is a node's error answer; a 404 is errNotFound.
type statusError struct {
	err      error
	notFound bool
}

func (e *statusError) Error() string        { return e.err.Error() }
func (e *statusError) Is(target error) bool { return e.notFound && target == errNotFound }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// signer returns the loaded key, or why there is none.
func (c *client) signer() (*chain.Key, error) {
	if c.setupErr != nil {
		return nil, c.setupErr
	}
	if c.key == nil {
		return nil, errNoKey
	}
	return c.key, nil
}
