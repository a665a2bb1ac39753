package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// nodeConfig is the node.toml file; every field has a flag of the same name.
type nodeConfig struct {
	// ID is the node's name, unique in the consortium (Raft server ID and
	// checkpoint signer name).
	ID string `toml:"id"`
	// Dir is the data directory (ledger store, Raft log, snapshots).
	Dir string `toml:"dir"`
	// Key is the node's Ed25519 key file (sandboxctl key new).
	Key string `toml:"key"`
	// HTTP is the API listen address.
	HTTP string `toml:"http"`
	// PublicURL is the URL clients reach the API at (scheme://host:port):
	// signed requests name it, so one captured at another node is refused
	// here. Default: the listen address; required when listening on all
	// interfaces.
	PublicURL string `toml:"public_url"`
	// Raft is the listen address for Raft and node-to-node requests.
	Raft string `toml:"raft"`
	// Advertise is the Raft address peers dial, if not Raft.
	Advertise string `toml:"advertise"`
	// Origin is the ledger's name in checkpoints; the same on every node.
	Origin string `toml:"origin"`
	// Bootstrap lists the first members as id=host:port, the same on each
	// of them; only used when the node has no Raft state yet.
	Bootstrap []string `toml:"bootstrap"`
	// Join is the Raft address of a member to ask for admission.
	Join string `toml:"join"`
	// Trust is a file of the other nodes' checkpoint verifier keys.
	Trust string `toml:"trust"`
	// Genesis is a file holding the signed genesis entry (base64, as
	// "sandboxctl genesis" writes it); the first start commits it.
	Genesis string `toml:"genesis"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// TLSCert and TLSKey are the node's certificate and key (PEM, e.g.
	// from "sandboxctl tls cert"): the API is then served over HTTPS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TLSCA is the consortium's CA certificate (PEM): with it the
	// node-to-node port speaks mutual TLS, every peer presenting a
	// certificate from this CA for the address it is dialled at. Needs
	// tls_cert and tls_key.
	TLSCA string `toml:"tls_ca"`
	// RateLimit is the requests per second one account may make to this
	// node on average, RateBurst how many at once; beyond, 429 with
	// Retry-After. Defaults 100 and 200; a negative rate_limit disables it.
	RateLimit float64 `toml:"rate_limit"`
	RateBurst int     `toml:"rate_burst"`
}

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseNodeConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(os.Stderr, c.LogLevel)
	if err != nil {
		return err
	}
	key, err := chain.LoadKeyFile(c.Key)
	if err != nil {
		return err
	}
	peers, err := parseBootstrap(c.Bootstrap)
	if err != nil {
		return err
	}
	if len(peers) > 0 && c.Join != "" {
		return errors.New("run: bootstrap and join are exclusive")
	}
	trust, err := loadTrust(c.Trust)
	if err != nil {
		return err
	}
	httpTLS, peerTLS, err := loadTLS(c)
	if err != nil {
		return err
	}
	n, err := startNode(ctx, nodeSpec{ID: c.ID, Dir: c.Dir, Key: key, HTTP: c.HTTP, Raft: c.Raft, Advertise: c.Advertise,
		Origin: c.Origin, Bootstrap: peers, Join: c.Join, Trust: trust, Logger: logger, HTTPTLS: httpTLS, PeerTLS: peerTLS,
		RateLimit: c.RateLimit, RateBurst: c.RateBurst, PublicURL: c.PublicURL})
	if err != nil {
		return err
	}
	printServing(stdout, c, n, httpTLS, peerTLS)
	if c.Genesis != "" {
		if err := commitGenesis(ctx, n, c.Genesis); err != nil {
			return errors.Join(err, n.close())
		}
	}
	<-ctx.Done()
	return n.close()
}

// parseNodeConfig reads the flags of sandboxd run and the config file they name (flags win), fills in the defaults and checks the required settings.
func parseNodeConfig(args []string, stderr io.Writer) (nodeConfig, error) {
	fs := flag.NewFlagSet("sandboxd run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "node.toml; flags override its values")
	var c nodeConfig
	fs.StringVar(&c.ID, "id", "", "node name")
	fs.StringVar(&c.Dir, "dir", "", "data directory")
	fs.StringVar(&c.Key, "key", "", "node key file")
	fs.StringVar(&c.HTTP, "http", "", "HTTP listen address (default 127.0.0.1:8080)")
	fs.StringVar(&c.PublicURL, "public-url", "", "URL clients reach the API at, which their signatures name (default: the listen address)")
	fs.StringVar(&c.Raft, "raft", "", "Raft listen address (default 127.0.0.1:9080)")
	fs.StringVar(&c.Advertise, "advertise", "", "Raft address peers dial")
	fs.StringVar(&c.Origin, "origin", "", "ledger origin line")
	bootstrap := fs.String("bootstrap", "", "first members, id=host:port,...")
	fs.StringVar(&c.Join, "join", "", "Raft address of a member to join through")
	fs.StringVar(&c.Trust, "trust", "", "file of other nodes' checkpoint keys")
	fs.StringVar(&c.Genesis, "genesis", "", "signed genesis entry to commit on first start (sandboxctl genesis)")
	fs.StringVar(&c.LogLevel, "log-level", "", "debug, info, warn or error")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "node certificate (PEM): serve the API over HTTPS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "node certificate's key (PEM)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "consortium CA (PEM): mutual TLS between nodes")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "requests per second per account (default 100; negative: no limit)")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "requests at once per account (default 200)")
	if err := fs.Parse(args); err != nil {
		return nodeConfig{}, err
	}
	var file nodeConfig
	if *configPath != "" {
		md, err := toml.DecodeFile(*configPath, &file)
		if err != nil {
			return nodeConfig{}, fmt.Errorf("run: %w", err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return nodeConfig{}, fmt.Errorf("run: %s: unknown setting %q", *configPath, und[0].String())
		}
	}
	if *bootstrap != "" {
		c.Bootstrap = strings.Split(*bootstrap, ",")
	}
	merge(&c, file)
	if c.HTTP == "" {
		c.HTTP = "127.0.0.1:8080"
	}
	if c.Raft == "" {
		c.Raft = "127.0.0.1:9080"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ID == "" || c.Dir == "" || c.Key == "" {
		return nodeConfig{}, errors.New("run: id, dir and key are required (in --config or as flags)")
	}
	return c, nil
}

// parseBootstrap reads the first members, each id=host:port.
func parseBootstrap(members []string) ([]chain.Peer, error) {
	var peers []chain.Peer
	for _, b := range members {
		id, addr, ok := strings.Cut(strings.TrimSpace(b), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("run: bootstrap member %q is not id=host:port", b)
		}
		peers = append(peers, chain.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// printServing tells the user where the started node serves, and how its peers reach it.
func printServing(stdout io.Writer, c nodeConfig, n *liveNode, httpTLS, peerTLS *tls.Config) {
	scheme, peerMode := "http", "plain TCP"
	if httpTLS != nil {
		scheme = "https"
	}
	if peerTLS != nil {
		peerMode = "mutual TLS"
	}
	fmt.Fprintf(stdout, "node %s serving %s://%s, raft %s (%s)\n", c.ID, scheme, c.HTTP, n.chain.Addr(), peerMode)
}

// loadTLS reads the node's TLS settings: HTTPS for the API with a
// certificate and key, and mutual TLS between nodes with the CA too.
func loadTLS(c nodeConfig) (httpTLS, peerTLS *tls.Config, err error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		if c.TLSCA != "" {
			return nil, nil, errors.New("run: tls_ca needs tls_cert and tls_key (the node's own certificate)")
		}
		return nil, nil, nil
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, nil, errors.New("run: tls_cert and tls_key go together")
	}
	pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("run: TLS certificate: %w", err)
	}
	httpTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if c.TLSCA == "" {
		return httpTLS, nil, nil
	}
	b, err := os.ReadFile(c.TLSCA)
	if err != nil {
		return nil, nil, fmt.Errorf("run: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, nil, fmt.Errorf("run: %s holds no PEM certificate", c.TLSCA)
	}
	return httpTLS, chain.NodeTLS(pair, pool), nil
}

// commitGenesis commits the genesis entry once a leader is known, unless the
// ledger already has entries. Every bootstrap node may be given the same
// file: appends are idempotent.
func commitGenesis(ctx context.Context, n *liveNode, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("run: %s: not base64", path)
	}
	if e, err := chain.ParseAndVerify(raw); err != nil {
		return fmt.Errorf("run: %s: %w", path, err)
	} else if e.Kind != policies.KindGenesis {
		return fmt.Errorf("run: %s holds a %s entry, not genesis", path, e.Kind)
	}
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := n.chain.WaitLeader(gctx); err != nil {
		return err
	}
	if n.chain.Ledger().Size() > 0 {
		if first, err := n.chain.Ledger().Entry(0); err == nil && bytes.Equal(first, raw) {
			return nil
		}
		return fmt.Errorf("run: the ledger already has a different genesis than %s", path)
	}
	if _, err := n.chain.Append(gctx, raw); err != nil {
		return fmt.Errorf("run: committing genesis: %w", err)
	}
	return nil
}

// merge fills empty fields of c from the file.
func merge(c *nodeConfig, f nodeConfig) {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&c.ID, f.ID)
	set(&c.Dir, f.Dir)
	set(&c.Key, f.Key)
	set(&c.HTTP, f.HTTP)
	set(&c.PublicURL, f.PublicURL)
	set(&c.Raft, f.Raft)
	set(&c.Advertise, f.Advertise)
	set(&c.Origin, f.Origin)
	set(&c.Join, f.Join)
	set(&c.Trust, f.Trust)
	set(&c.Genesis, f.Genesis)
	set(&c.LogLevel, f.LogLevel)
	set(&c.TLSCert, f.TLSCert)
	set(&c.TLSKey, f.TLSKey)
	set(&c.TLSCA, f.TLSCA)
	if c.RateLimit == 0 {
		c.RateLimit = f.RateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = f.RateBurst
	}
	if len(c.Bootstrap) == 0 {
		c.Bootstrap = f.Bootstrap
	}
}
