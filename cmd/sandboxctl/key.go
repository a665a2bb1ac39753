package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/chain"
)

func cmdKeyNew(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	out := fs.String("out", "", "key file to create (mode 0600; never overwritten)")
	algName := fs.String("algorithm", "ed25519", "ed25519 or ml-dsa-65")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("key new: --out FILE is required")
	}
	alg, err := chain.ParseAlgorithm(*algName)
	if err != nil {
		return err
	}
	k, err := chain.GenerateKey(alg)
	if err != nil {
		return err
	}
	if err := k.WriteKeyFile(*out); err != nil {
		return fmt.Errorf("key new: %w", err)
	}
	if g.json {
		return printJSON(g.stdout, map[string]string{"address": k.Address().String(), "algorithm": alg.String(), "file": *out})
	}
	fmt.Fprintln(g.stdout, k.Address().String())
	return nil
}

func loadKey(g *globals) (*chain.Key, error) {
	if g.key == "" {
		return nil, client.ErrNoKey
	}
	return client.LoadKeyFile(g.key)
}
