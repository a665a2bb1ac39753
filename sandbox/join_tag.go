package sandbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// A row's tag for one join job is a keyed one-way function of its stored
// consortium pseudonym P(id), 16 pseudorandom bytes (the VOPRF's output,
// truncated), in the Matyas-Meyer-Oseas form:
//
//	Tag = (AES-128(K_tag, P(id)) XOR P(id))[:12],  K_tag = HMAC-SHA256(k_job, tagKeyLabel)[:16]
//
// It plays the part DESIGN.md gives HMAC(k_job, P(id)): a pseudorandom
// function of P(id) under a key only the job's owners (and, for a list,
// the enterprise) hold, so the executor can match tags but not invert
// them, and tags of two jobs cannot be linked; and, for the XOR, one-way
// even to a holder of k_job (AES alone could be decrypted by an owner who
// got hold of another part's tags, giving back its pseudonyms). One AES-NI
// block per row costs a tenth of HMAC-SHA256's two SHA-256 compressions,
// which was most of what a join of millions of rows cost the owners. 96
// bits are kept: two of n people share a tag with probability about
// n²/2^97 (10^-13 for 10^8 people), and every tag shipped is hashed twice
// (the owner's commitment, the executor's check), so the bytes count.
// K_tag is derived rather than k_job used directly, so the job key keeps
// no second use; it is fresh per job and its tags live for that job, so
// 128 bits of key suffice (10 rounds against AES-256's 14).
const tagKeyLabel = "datasandbox join tag v1"

// tagger computes the tags of one job.
type tagger struct{ block cipher.Block }

func newTagger(kJob []byte) (tagger, error) {
	if len(kJob) == 0 {
		return tagger{}, fmt.Errorf("sandbox: no job key to tag with")
	}
	m := hmac.New(sha256.New, kJob)
	m.Write([]byte(tagKeyLabel))
	b, err := aes.NewCipher(m.Sum(nil)[:16])
	if err != nil {
		return tagger{}, err
	}
	return tagger{block: b}, nil
}

// tags writes the tags of the consecutive pseudonyms in pseudos
// (PseudonymSize bytes each) into dst (TagSize bytes each).
func (t tagger) tags(dst, pseudos []byte) {
	n := len(pseudos) / PseudonymSize
	i := 0
	// A block is written whole where dst has room; the next tag overwrites
	// its last aes.BlockSize-TagSize bytes.
	for ; i < n && i*TagSize+aes.BlockSize <= len(dst); i++ {
		p, d := pseudos[i*PseudonymSize:(i+1)*PseudonymSize], dst[i*TagSize:i*TagSize+aes.BlockSize]
		t.block.Encrypt(d, p)
		xorTag(d, d, p)
	}
	b := make([]byte, aes.BlockSize)
	for ; i < n; i++ {
		p := pseudos[i*PseudonymSize : (i+1)*PseudonymSize]
		t.block.Encrypt(b, p)
		xorTag(dst[i*TagSize:], b, p)
	}
}

// xorTag writes the first TagSize bytes of a XOR b into dst (inline, two
// words: it runs once per row).
func xorTag(dst, a, b []byte) {
	le := binary.LittleEndian
	le.PutUint64(dst, le.Uint64(a)^le.Uint64(b))
	le.PutUint32(dst[8:], le.Uint32(a[8:])^le.Uint32(b[8:]))
}
