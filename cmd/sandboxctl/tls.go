package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/datasandbox/datasandbox/chain"
)

// cmdTLSCA writes a new CA: ca.pem (give it to every node as tls_ca and to
// clients as --ca) and ca.key (keep it offline).
func cmdTLSCA(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	dir := fs.String("out-dir", "", "directory for ca.pem and ca.key")
	name := fs.String("name", "datasandbox consortium CA", "the CA's name")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("tls ca: --out-dir is required")
	}
	ca, err := chain.NewCA(*name)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.PEM()
	if err != nil {
		return err
	}
	if err := writeNew(*dir, "ca.pem", certPEM, 0o644); err != nil {
		return err
	}
	if err := writeNew(*dir, "ca.key", keyPEM, 0o600); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"certificate": filepath.Join(*dir, "ca.pem"), "key": filepath.Join(*dir, "ca.key")})
	}
	fmt.Fprintf(g.stdout, "CA %q written to %s (ca.pem: give to nodes as tls_ca and to clients as --ca; ca.key: keep offline)\n", *name, *dir)
	return nil
}

// cmdTLSCert issues a node's certificate for the names and addresses
// peers and clients reach it at.
func cmdTLSCert(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	caDir := fs.String("ca-dir", "", "directory holding ca.pem and ca.key")
	name := fs.String("name", "", "the node's name")
	hosts := fs.String("host", "", "comma-separated DNS names and IP addresses the node is reached at")
	dir := fs.String("out-dir", "", "directory for NAME-tls.pem and NAME-tls.key")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *caDir == "" || *name == "" || *hosts == "" || *dir == "" {
		return errors.New("tls cert: --ca-dir, --name, --host and --out-dir are required")
	}
	certPEM, err := os.ReadFile(filepath.Join(*caDir, "ca.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(*caDir, "ca.key"))
	if err != nil {
		return err
	}
	ca, err := chain.LoadCA(certPEM, keyPEM)
	if err != nil {
		return err
	}
	var hs []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	cert, key, err := ca.Issue(*name, hs)
	if err != nil {
		return err
	}
	if err := writeNew(*dir, *name+"-tls.pem", cert, 0o644); err != nil {
		return err
	}
	if err := writeNew(*dir, *name+"-tls.key", key, 0o600); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"certificate": filepath.Join(*dir, *name+"-tls.pem"), "key": filepath.Join(*dir, *name+"-tls.key"), "hosts": hs})
	}
	fmt.Fprintf(g.stdout, "certificate for %s (%s) written to %s: %s-tls.pem and %s-tls.key (tls_cert and tls_key)\n", *name, strings.Join(hs, ", "), *dir, *name, *name)
	return nil
}

// writeNew writes a file that must not exist yet (never overwrite keys).
func writeNew(dir, name string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
