// Package mpc runs the multiparty protocols between the agency nodes:
// the CKKS key ceremony that gives the consortium a collective key nobody
// holds, and t-of-N threshold re-encryption of a job's result to the
// enterprise that asked for it (Lattigo v5 mhe).
//
// # Ceremony
//
// One node coordinates; every participant (a node account holding the
// join permission) takes part:
//
//  1. round 1: each participant draws its additive secret s_i, answers with
//     its share of the collective public key (mhe.PublicKeyGenProtocol) and
//     of each Galois key the engine uses (mhe.GaloisKeyGenProtocol), both
//     over common reference polynomials from a seed the coordinator picked,
//     and a fresh X25519 HPKE key;
//  2. round 2: each participant splits s_i with a degree t-1 Shamir
//     polynomial (mhe.Thresholdizer) and seals the share of every other
//     participant to that participant's HPKE key (RFC 9180, circl);
//  3. round 3: the coordinator hands each participant the sealed shares
//     addressed to it with the aggregated public and Galois keys; the
//     participant opens them, sums them into its t-of-N share of
//     s = Σ s_i, forgets s_i, keeps the share and the keys on disk (0600),
//     and acknowledges the keys' digests.
//
// Every message is signed by its sender's node key and checked against the
// sender's account on the committed ledger. The coordinator then commits
// he.ceremony: participants and their Shamir points, threshold, digests of
// the public key, Galois keys and the transcript (every signed message).
//
// # Release
//
// The node that ran an he job asks t participants (itself first) for a
// share. Each one re-checks on its own committed ledger that the job is
// running, in he mode and not released, commits he.share (the state
// machine refuses a share for any other job state, and a second share of
// one node for another ciphertext of the same job), then computes its
// additive share of s for the active set (mhe.Combiner) and its share of a
// public-key switch (mhe.PublicKeySwitchProtocol) from s to the
// requester's registered CKKS key, with smudging noise σ = 2^26 (see
// SmudgingSigma), plus its own draw of the policy's differential-privacy
// noise on every released quantity. The runner adds the shares and gets
// the result encrypted under the requester's key; the requester decrypts
// it locally. job.complete of an he job is accepted only after t shares
// for one ciphertext are on the ledger.
//
// # Consortium pseudonyms
//
// Pseudonyms (pseudonyms*.go) runs the threshold OPRF of package
// mpc/pseudonym between the nodes: the joint-Feldman key ceremony (three
// signed rounds like the one above: HPKE keys, dealings with Feldman
// commitments and sealed shares, combination; the coordinator commits
// pseudonym.ceremony with every dealer's commitments and every node's
// verification key) and partial evaluations of pseudonym.batch entries,
// each node re-checking on its own committed ledger that the batch exists
// for exactly that request. Its threat model is in that package's doc.
//
// # Threat model
//
// Nodes are honest but curious: they follow the protocol and may try to
// learn from what they see. Under that model
//
//   - a node sees the masked clear columns it holds (as in masked mode),
//     the ciphertexts and shares, the clear counts of a job's cells, never
//     a sensitive value or a sum of them; fewer than t nodes together learn
//     nothing about the collective secret (Shamir) and cannot decrypt;
//   - the requester learns the released quantities with DP noise: every
//     decrypting node adds a full draw of the policy's mechanism, so the
//     release stays differentially private even if t-1 decrypting nodes
//     collude with the requester (the cost is a √t larger noise), plus
//     the smudging noise;
//   - the auditor sees on the ledger who shared for which ciphertext of
//     which job, and that t did before the release.
//
// Out of scope: a malicious runner that asks for shares of another
// ciphertext than the job's (the result would still only decrypt under the
// requester's key, and the ledger records the digest it asked for; nodes
// do not re-evaluate the job), malicious nodes deviating from the ceremony
// (no zero-knowledge proofs of well-formed shares), side channels, and the
// key-recovery risk of the smudging width: σ = 2^26 exceeds the result's
// ciphertext noise (about 2^15, estimated from the error sandbox's
// TestHEMatchesMasked measures on a 20,000-row sum) by ~2^11, not by the 2^40 a statistical
// argument would ask for; the DP noise on every released coefficient is
// far wider, but it is not a proof. The node-to-node transport is chain's
// (mutual TLS 1.3 with the consortium's CA when configured, plain TCP on
// loopback); Shamir shares travel sealed with HPKE and messages are signed
// whatever it is, so only availability depends on it.
//
// Ciphertexts and key-switch shares from other nodes are read with
// sandbox/heparams' strict codec, never Lattigo's own decoder (which
// recurses without end on some truncated inputs).
package mpc
