package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/datasandbox/datasandbox/chain"
)

// Node is what the API needs of a ledger node.
type Node interface {
	ID() string
	Leader() (id, addr string)
	Append(ctx context.Context, entry []byte) (chain.Receipt, error)
	Ledger() *chain.Ledger
}

// Config configures the HTTP server.
type Config struct {
	Addr              string        // listen address, e.g. 127.0.0.1:8080
	ReadHeaderTimeout time.Duration // bounds slow-loris clients
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	BodyLimit         string        // Echo body-limit syntax, e.g. "4M"
	AppendTimeout     time.Duration // how long a write may wait for commit
	MaxPage           int           // most entries returned by one ledger read
	Logger            *slog.Logger
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BodyLimit:         "4M",
		AppendTimeout:     15 * time.Second,
		MaxPage:           1000,
	}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("api: config: Addr is required")
	}
	if c.MaxPage <= 0 {
		return errors.New("api: config: MaxPage must be positive")
	}
	return nil
}

// Server serves the API of one node.
type Server struct {
	cfg  Config
	log  *slog.Logger
	node Node
	e    *echo.Echo
	http *http.Server
}

// New builds the server and its routes.
func New(cfg Config, node Node) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "api", "node", node.ID()), node: node}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.log)
	e.Use(middleware.BodyLimit(cfg.BodyLimit))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("panic in handler", "path", c.Path(), "err", err)
		return err
	}}))
	s.e = e
	s.routes()
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
	handler               echo.HandlerFunc
}

// Routes lists every endpoint, for the OpenAPI document and for tests that
// must cover all of them.
func (s *Server) Routes() []Route {
	return []Route{
		{http.MethodGet, "/v1/health", "liveness, leader and ledger size", s.health},
		{http.MethodGet, "/v1/openapi.json", "this API's OpenAPI 3 document", s.openapi},
		{http.MethodGet, "/v1/ledger/checkpoint", "latest checkpoint signed by this node", s.checkpoint},
		{http.MethodGet, "/v1/ledger/entries", "raw signed entries [start, end)", s.entries},
		{http.MethodPost, "/v1/ledger/entries", "submit a signed entry", s.appendEntry},
		{http.MethodGet, "/v1/ledger/proof/inclusion", "RFC 6962 audit path", s.inclusion},
		{http.MethodGet, "/v1/ledger/proof/consistency", "RFC 6962 consistency proof", s.consistency},
	}
}

func (s *Server) routes() {
	for _, r := range s.Routes() {
		s.e.Add(r.Method, r.Path, r.handler)
	}
}

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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
