package mpc

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
)

// store keeps a finished ceremony in Config.Dir: the Galois keys, the
// public key, this node's t-of-N share (0600) and the plan, each synced,
// then renamed into place with the plan last.
func (p *Party) store(plan, share, pk, galois []byte) error {
	for name, b := range map[string][]byte{"galois.bin": galois, "pk.bin": pk, "share.bin": share, "ceremony.json": plan} {
		tmp := filepath.Join(p.cfg.Dir, name+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		f, err := os.Open(tmp)
		if err == nil {
			err = errors.Join(f.Sync(), f.Close())
		}
		if err != nil {
			return err
		}
	}
	// ceremony.json last: its presence marks a complete set.
	for _, name := range []string{"galois.bin", "pk.bin", "share.bin", "ceremony.json"} {
		if err := os.Rename(filepath.Join(p.cfg.Dir, name+".tmp"), filepath.Join(p.cfg.Dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// load reads what store kept, if a ceremony finished here.
func (p *Party) load() error {
	planb, err := os.ReadFile(filepath.Join(p.cfg.Dir, "ceremony.json"))
	if err != nil {
		return err
	}
	var plan Plan
	if err := json.Unmarshal(planb, &plan); err != nil {
		return err
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(p.cfg.Dir, name)) }
	sb, err := read("share.bin")
	if err != nil {
		return err
	}
	pkb, err := read("pk.bin")
	if err != nil {
		return err
	}
	gb, err := read("galois.bin")
	if err != nil {
		return err
	}
	var tsk mhe.ShamirSecretShare
	if err := unmarshal(sb, &tsk); err != nil {
		return err
	}
	pk := rlwe.NewPublicKey(p.params)
	if err := unmarshal(pkb, pk); err != nil {
		return err
	}
	blobs, err := splitBlobs(gb)
	if err != nil {
		return err
	}
	gks := make([]*rlwe.GaloisKey, len(blobs))
	for i, b := range blobs {
		gks[i] = new(rlwe.GaloisKey)
		if err := unmarshal(b, gks[i]); err != nil {
			return err
		}
	}
	p.cer, p.tsk = &plan, &tsk
	p.keys = &Keys{PK: pk, Galois: gks, PKSHA256: hexSum(pkb), GaloisSHA256: hexSum(gb)}
	return nil
}
