package mpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/datasandbox/datasandbox/mpc/pseudonym"
)

// A node's pseudonym key share on disk.

// psFile is the share file: every share this node holds, by ceremony.
type psFile struct {
	Shares map[string][]byte `json:"shares"` // ceremony id -> pseudonym.KeyShare encoding
}

const psFileName = "pseudonym.share"

// maxShares bounds the shares kept: the committed one and a few from
// ceremonies that may yet be committed (the oldest others are dropped).
const maxShares = 4

// store adds a share to the file (0600, fsync, atomic rename) and to
// memory; the committed ceremony's share is never dropped.
func (p *Pseudonyms) store(id string, ks *pseudonym.KeyShare) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := psFile{Shares: map[string][]byte{}}
	for cid, s := range p.shares {
		f.Shares[cid], _ = s.MarshalBinary()
	}
	f.Shares[id], _ = ks.MarshalBinary()
	p.order = append(p.order, id)
	if c, ok := p.cfg.Ledger.Pseudonym(); len(p.order) > maxShares {
		for i, old := range p.order {
			if old != id && (!ok || old != c.ID) {
				delete(f.Shares, old)
				p.order = append(p.order[:i], p.order[i+1:]...)
				break
			}
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	path := filepath.Join(p.cfg.Dir, psFileName)
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(b)
	if err = errors.Join(err, fh.Sync(), fh.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	shares := map[string]*pseudonym.KeyShare{}
	for cid := range f.Shares {
		if cid == id {
			shares[cid] = ks
		} else {
			shares[cid] = p.shares[cid]
		}
	}
	p.shares = shares
	return nil
}

func (p *Pseudonyms) load() error {
	b, err := os.ReadFile(filepath.Join(p.cfg.Dir, psFileName))
	if err != nil {
		return err
	}
	var f psFile
	if err := json.Unmarshal(b, &f); err != nil {
		return errors.New("the share file is malformed") // never echo its bytes
	}
	p.shares = map[string]*pseudonym.KeyShare{}
	for cid, sb := range f.Shares {
		ks, err := pseudonym.ParseKeyShare(sb)
		if err != nil {
			return fmt.Errorf("the share file holds an invalid key share for ceremony %q", clipID(cid))
		}
		p.shares[cid] = ks
		p.order = append(p.order, cid)
	}
	slices.Sort(p.order) // the age is unknown after a restart; any order bounds the count
	return nil
}
