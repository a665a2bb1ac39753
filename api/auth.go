package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/policies"
)

// caller is the authenticated account of a request.
type caller struct {
	addr    policies.Address
	account policies.Account
	body    []byte
	request audit.SignedRequest // kept for relaying to the ledger
	// act identifies the signed act (audit.ActKey): the ledger applies it
	// once, and a repeat of a write is answered with the first outcome.
	act string
}

const ctxCaller = "caller"

func callerOf(c echo.Context) *caller { return c.Get(ctxCaller).(*caller) }

func unauthorized(code, detail string) error {
	return &problemError{status: http.StatusUnauthorized, code: code, detail: detail}
}

func forbidden(detail string) error {
	return &problemError{status: http.StatusForbidden, code: "forbidden", detail: detail}
}

// authenticate checks the request's RFC 9421 signature against the
// committed key of the account named by keyid, that it names this node,
// the created time, and the route's permission.
//
// Replays: a signed request is bound to this node (its @target-uri) and to
// a window around its created time. Within them a read may be repeated —
// it shows again what its signer may see, to whoever holds the request — so
// a plain RFC 9421 client without nonces works. A write is an act the
// ledger applies once, whichever node relays it and however its signature
// is labelled (audit.ActKey, checked by the state machine on every node
// and by auditors); its repeat gets the outcome of the first.
func (s *Server) authenticate(r Route, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		var body []byte
		if !r.Stream {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.cfg.BodyLimit))
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					return &problemError{status: http.StatusRequestEntityTooLarge, code: "body-too-large", detail: fmt.Sprintf("request body exceeds %d bytes", s.cfg.BodyLimit)}
				}
				return badRequest("bad-body", "could not read the request body")
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		if req.Header.Get("Signature") == "" || req.Header.Get("Signature-Input") == "" {
			return unauthorized("unsigned", "this endpoint needs an RFC 9421 signature (Signature and Signature-Input headers, keyid = account address)")
		}
		addr, err := audit.RequestKeyID(req)
		if err != nil {
			return unauthorized("bad-signature", clip(err.Error()))
		}
		// Keys, permissions and what the handler reads are looked up in a
		// state that holds every write acknowledged before, whichever node
		// took it. (After the cheap checks: an unsigned request costs no
		// quorum round.)
		ctx, cancel := context.WithTimeout(req.Context(), s.cfg.AppendTimeout)
		err = s.node.ReadBarrier(ctx)
		cancel()
		if err != nil {
			return err
		}
		acc, known := s.state.Account(addr)
		key := acc.PublicKey
		if (!known || key == nil) && r.Path == "/v1/accounts" && r.Method == http.MethodPost {
			// Registration: the key comes with the request, which it signs.
			var d policies.RegisterDoc
			if json.Unmarshal(body, &d) != nil || policies.AddressOf(d.PublicKey) != addr {
				return badRequest("bad-body", "registration must be {\"public_key\": \"<base64>\", \"algorithm\": \"ed25519\" or \"ml-dsa-65\"} with the key that signs the request (keyid = its address)")
			}
			key = d.PublicKey
		} else if !known || key == nil {
			return unauthorized("unknown-account", fmt.Sprintf("unknown account %s: the ledger holds no key for it (register with POST /v1/accounts)", addr))
		}
		var created time.Time
		if r.Stream {
			created, err = audit.VerifyStreamedRequest(req, addr, key)
		} else {
			created, err = audit.VerifyRequest(req, body, addr, key)
		}
		switch {
		case errors.Is(err, audit.ErrBadDigest):
			return unauthorized("bad-digest", "Content-Digest does not match the body (tampered or truncated body)")
		case errors.Is(err, audit.ErrUnsigned):
			return unauthorized("unsigned", err.Error())
		case err != nil:
			return unauthorized("bad-signature", "signature does not verify with the key of account "+addr.String()+": "+clip(err.Error()))
		}
		if d := time.Since(created); d > s.cfg.SignatureWindow || d < -s.cfg.SignatureWindow {
			return unauthorized("stale-signature", fmt.Sprintf("signature created at %s, more than %s from the server's time", created.Format(time.RFC3339), s.cfg.SignatureWindow))
		}
		if !s.hosts[strings.ToLower(req.Host)] {
			return unauthorized("wrong-node", fmt.Sprintf("the request is signed for %s (its @target-uri), which is not this node (%s): sign each request for the node it is sent to", clip(req.Host), s.publicName()))
		}
		// Only writes are acts the ledger applies once; reads need no key.
		var act string
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			if act, err = audit.ActKey(req); err != nil {
				return unauthorized("bad-signature", clip(err.Error()))
			}
		}
		if wait := s.limits.allow(addr, time.Now()); wait > 0 {
			secs := int(math.Ceil(wait.Seconds()))
			return &problemError{status: http.StatusTooManyRequests, code: "rate-limited", retryAfter: secs,
				detail: fmt.Sprintf("account %s is over its request rate (%g/s, bursts of %d): retry in %ds", addr, s.cfg.RateLimit, s.cfg.RateBurst, secs)}
		}
		if r.Perm != "" && !s.state.Can(addr, r.Perm) {
			return forbidden(fmt.Sprintf("account %s lacks permission %s", addr, r.Perm))
		}
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		c.Set(ctxCaller, &caller{addr: addr, account: acc, body: body, act: act,
			request: audit.CaptureRequest(req, scheme+"://"+req.Host+req.URL.RequestURI(), body)})
		return next(c)
	}
}

// rateLimits holds a token bucket per account (authenticated requests
// only, so the map is bounded by the accounts on the ledger).
type rateLimits struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	buckets map[policies.Address]*rate.Limiter
}

func newRateLimits(perSecond float64, burst int) *rateLimits {
	return &rateLimits{rate: rate.Limit(perSecond), burst: burst, buckets: map[policies.Address]*rate.Limiter{}}
}

// allow takes a token for the account, or says how long until one is
// free (without taking it).
func (l *rateLimits) allow(a policies.Address, now time.Time) time.Duration {
	if l == nil || l.rate == 0 {
		return 0
	}
	l.mu.Lock()
	b := l.buckets[a]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[a] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// publicName is how this node is reached, for error messages.
func (s *Server) publicName() string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	return s.cfg.Addr
}
