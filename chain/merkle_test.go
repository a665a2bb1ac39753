package chain

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// Known-answer vectors from Certificate Transparency's test suite, as
// published in transparency-dev/merkle v0.0.2 (proof/verify_test.go and
// testonly/constants.go). Leaf indices here are 0-based.
var (
	ktLeaves = testonly.LeafInputs()
	ktRoots  = testonly.RootHashes()

	ktInclusion = []struct {
		index, size uint64
		path        []string
	}{
		{0, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{5, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{1, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
		{0, 1, nil},
	}
	ktConsistency = []struct {
		first, second uint64
		path          []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
		{6, 7, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
	}
)

func hexHashes(t *testing.T, in []string) []Hash {
	t.Helper()
	out := make([]Hash, len(in))
	for i, s := range in {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("bad vector %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

func ktTree() *Tree {
	var tr Tree
	for _, l := range ktLeaves {
		tr.AppendLeafHash(LeafHash(l))
	}
	return &tr
}

func TestMerkleKnownRoots(t *testing.T) {
	tr := ktTree()
	for size := uint64(0); size <= tr.Size(); size++ {
		got, err := tr.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got[:]) != hex.EncodeToString(ktRoots[size]) {
			t.Errorf("root(%d) = %x, want %x", size, got, ktRoots[size])
		}
	}
}

func TestMerkleKnownInclusion(t *testing.T) {
	tr := ktTree()
	for _, v := range ktInclusion {
		t.Run(fmt.Sprintf("%d/%d", v.index, v.size), func(t *testing.T) {
			got, err := tr.InclusionProof(v.index, v.size)
			if err != nil {
				t.Fatal(err)
			}
			want := hexHashes(t, v.path)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("proof = %x, want %x", got, want)
			}
			root, _ := tr.Root(v.size)
			if err := VerifyInclusion(v.index, v.size, tr.LeafHashAt(v.index), got, root); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMerkleKnownConsistency(t *testing.T) {
	tr := ktTree()
	for _, v := range ktConsistency {
		t.Run(fmt.Sprintf("%d/%d", v.first, v.second), func(t *testing.T) {
			got, err := tr.ConsistencyProof(v.first, v.second)
			if err != nil {
				t.Fatal(err)
			}
			want := hexHashes(t, v.path)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("proof = %x, want %x", got, want)
			}
			r1, _ := tr.Root(v.first)
			r2, _ := tr.Root(v.second)
			if err := VerifyConsistency(v.first, v.second, got, r1, r2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConsistencyFromZeroRefused(t *testing.T) {
	tr := ktTree()
	if _, err := tr.ConsistencyProof(0, 3); err == nil {
		t.Fatal("consistency proof from size 0 was produced")
	}
	r, _ := tr.Root(3)
	if err := VerifyConsistency(0, 3, nil, EmptyRoot(), r); err == nil {
		t.Fatal("consistency proof from size 0 verified")
	}
}

func toBytes(h []Hash) [][]byte {
	out := make([][]byte, len(h))
	for i := range h {
		out[i] = append([]byte(nil), h[i][:]...)
	}
	return out
}

// TestMerkleAgainstIndependentVerifier checks every proof of trees up to 70
// leaves, and random ones of a larger tree, with transparency-dev/merkle's
// verifier and with ours, and checks that corrupted proofs fail both.
func TestMerkleAgainstIndependentVerifier(t *testing.T) {
	var tr Tree
	ref := testonly.New(rfc6962.DefaultHasher)
	for i := 0; i < 1500; i++ {
		leaf := []byte(fmt.Sprintf("leaf %d", i))
		tr.AppendLeafHash(LeafHash(leaf))
		ref.AppendData(leaf)
	}
	check := func(size uint64) {
		root, _ := tr.Root(size)
		if want := ref.HashAt(size); string(want) != string(root[:]) {
			t.Fatalf("root(%d) differs from reference", size)
		}
	}
	pairs := [][2]uint64{}
	for n := uint64(1); n <= 70; n++ {
		for m := uint64(1); m <= n; m++ {
			pairs = append(pairs, [2]uint64{m, n})
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		n := 1 + rng.Uint64N(tr.Size())
		pairs = append(pairs, [2]uint64{1 + rng.Uint64N(n), n})
	}
	for _, p := range pairs {
		m, n := p[0], p[1]
		check(n)
		root, _ := tr.Root(n)
		idx := m - 1
		ip, err := tr.InclusionProof(idx, n)
		if err != nil {
			t.Fatal(err)
		}
		lh := tr.LeafHashAt(idx)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, n, lh[:], toBytes(ip), root[:]); err != nil {
			t.Fatalf("inclusion %d/%d rejected by reference: %v", idx, n, err)
		}
		if err := VerifyInclusion(idx, n, lh, ip, root); err != nil {
			t.Fatalf("inclusion %d/%d: %v", idx, n, err)
		}
		r1, _ := tr.Root(m)
		cp, err := tr.ConsistencyProof(m, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, n, toBytes(cp), r1[:], root[:]); err != nil {
			t.Fatalf("consistency %d/%d rejected by reference: %v", m, n, err)
		}
		if err := VerifyConsistency(m, n, cp, r1, root); err != nil {
			t.Fatalf("consistency %d/%d: %v", m, n, err)
		}
		// Corruptions must fail.
		if len(ip) > 0 {
			bad := append([]Hash(nil), ip...)
			bad[rng.IntN(len(bad))][0] ^= 1
			if VerifyInclusion(idx, n, lh, bad, root) == nil {
				t.Fatalf("corrupted inclusion %d/%d verified", idx, n)
			}
			if VerifyInclusion(idx, n, lh, ip[:len(ip)-1], root) == nil {
				t.Fatalf("truncated inclusion %d/%d verified", idx, n)
			}
		}
		if VerifyInclusion(idx, n, lh, append(append([]Hash(nil), ip...), Hash{}), root) == nil {
			t.Fatalf("extended inclusion %d/%d verified", idx, n)
		}
		if len(cp) > 0 {
			bad := append([]Hash(nil), cp...)
			bad[rng.IntN(len(bad))][5] ^= 1
			if VerifyConsistency(m, n, bad, r1, root) == nil {
				t.Fatalf("corrupted consistency %d/%d verified", m, n)
			}
		}
	}
}

func TestProofBounds(t *testing.T) {
	tr := ktTree()
	for _, c := range [][2]uint64{{8, 8}, {0, 9}, {9, 9}} {
		t.Run(fmt.Sprintf("inclusion(%d,%d)", c[0], c[1]), func(t *testing.T) {
			if _, err := tr.InclusionProof(c[0], c[1]); err == nil {
				t.Errorf("inclusion(%d,%d) accepted", c[0], c[1])
			}
		})
	}
	for _, c := range [][2]uint64{{0, 1}, {5, 4}, {1, 9}} {
		t.Run(fmt.Sprintf("consistency(%d,%d)", c[0], c[1]), func(t *testing.T) {
			if _, err := tr.ConsistencyProof(c[0], c[1]); err == nil {
				t.Errorf("consistency(%d,%d) accepted", c[0], c[1])
			}
		})
	}
}

func BenchmarkProofs1M(b *testing.B) {
	var tr Tree
	for i := 0; i < 1<<20; i++ {
		var h Hash
		h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16)
		tr.AppendLeafHash(h)
	}
	n := tr.Size()
	b.Run("inclusion", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			size := n - uint64(i%1000)
			if _, err := tr.InclusionProof(uint64(i*7919)%size, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("consistency", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := tr.ConsistencyProof(1+uint64(i*7919)%(n-2000), n-uint64(i%1000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestFrontierMatchesTree(t *testing.T) {
	var tr Tree
	var f Frontier
	for i := 0; i < 600; i++ {
		lh := LeafHash([]byte(fmt.Sprint(i)))
		tr.AppendLeafHash(lh)
		f.Append(lh)
		want, _ := tr.Root(tr.Size())
		if f.Root() != want {
			t.Fatalf("frontier root differs at size %d", i+1)
		}
	}
	var empty Frontier
	if empty.Root() != EmptyRoot() {
		t.Fatal("empty root")
	}
	// RFC 6962 section 2.1: the empty tree's hash is SHA-256 of "".
	root := EmptyRoot()
	if got := hex.EncodeToString(root[:]); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("EmptyRoot() = %s", got)
	}
	if r, _ := tr.Root(0); r != EmptyRoot() {
		t.Fatal("Tree.Root(0) is not EmptyRoot()")
	}
}

func TestTreeTruncate(t *testing.T) {
	var tr Tree
	var roots []Hash
	for i := 0; i < 300; i++ {
		tr.AppendLeafHash(LeafHash([]byte(fmt.Sprint(i))))
		r, _ := tr.Root(tr.Size())
		roots = append(roots, r)
	}
	for _, size := range []uint64{299, 256, 255, 100, 1} {
		t.Run(fmt.Sprint("to ", size), func(t *testing.T) {
			tr.Truncate(size)
			if tr.Size() != size {
				t.Fatalf("size %d after truncate to %d", tr.Size(), size)
			}
			if r, _ := tr.Root(size); r != roots[size-1] {
				t.Fatalf("root after truncate to %d", size)
			}
			// Grow again to check the structure is intact.
			tr.AppendLeafHash(LeafHash([]byte(fmt.Sprint(size))))
			if r, _ := tr.Root(size + 1); r != roots[size] {
				t.Fatalf("root after regrowing to %d", size+1)
			}
			tr.Truncate(size)
		})
	}
}
