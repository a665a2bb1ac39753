// Package pseudonym computes consortium pseudonyms: P(id) = OPRF_k(id),
// RFC 9497's 2HashDH over ristretto255 in verifiable mode
// (ristretto255-SHA512), with the key k Shamir-shared among the agency
// nodes so that no node, and no client, ever holds it. It is the client
// package too: an agency's node at ingest and an enterprise's sandboxctl
// blind, verify, combine and finalise with it.
//
// # Protocol
//
// Key generation is joint-Feldman (Pedersen's DKG as GJKR name it): every
// participant deals a random polynomial f_d of degree t-1 (Deal), publishes
// its Feldman commitments a_dl·G and sends f_d(x) to the participant at
// point x, sealed to it. Each participant checks every share against its
// dealer's commitments (VerifyShare) and keeps k_x = Σ_d f_d(x) (Combine).
// The consortium key k = Σ_d f_d(0) is never computed anywhere. Anyone
// derives from the commitments alone the public key k·G = Σ_d a_d0·G and
// every participant's verification key k_x·G = Σ_d Σ_l a_dl·G·x^l
// (NewPublic): the ledger records the commitments and keys, and clients
// check partials against them.
//
// To pseudonymise, a client blinds each id, B = r·H(id) (Blind); t nodes
// each answer Z_x = k_x·B for the whole batch with one batched DLEQ proof
// (RFC 9497 section 2.2.1, circl zk/dleq) that log_G(k_x·G) = log_B(Z_x)
// (KeyShare.Evaluate); the client checks each proof against that node's
// verification key (Verify) — a wrong or missing partial is caught here and
// another node asked — and combines (Finalize)
//
//	N = Σ_x (λ_x · r⁻¹) · Z_x = k·H(id)
//
// with the Lagrange coefficients λ_x at 0 of the answering points, folding
// interpolation and unblinding into one scalar multiplication per partial,
// then hashes N with RFC 9497's Finalize. The result equals what RFC
// 9497's single-key verifiable server computes with k (the tests check it
// against circl's VerifiableServer.FullEvaluate for every t-subset); with
// one share and t = 1 the protocol is RFC 9497 itself, and its test
// vectors pass through this package.
//
// # Threat model
//
// Nodes are honest but curious, and up to t-1 of them may collude:
//
//   - fewer than t shares say nothing about k (Shamir), so t-1 colluding
//     nodes can neither compute a pseudonym nor test a guess of an id;
//   - an evaluating node sees blinded points only, uniformly random
//     whatever the id: it learns the batch's size and who asked, not the
//     ids, nor the pseudonyms;
//   - the client learns the pseudonyms of its own ids and nothing about k
//     beyond what the outputs imply (the one-more-DH assumption, as for
//     RFC 9497; Jarecki et al., TOPPSS, ACNS 2017, for the threshold case);
//   - the proofs make a node that answers with another key (by fault or
//     intent) detectable by the client, which then asks another node.
//
// What an agency (or any client with quota) can still do: pseudonymise ids
// it already knows, and so recognise them in a joined dataset. That is the
// function; the bound is procedural: every batch is a pseudonym.batch
// entry on the ledger (who, how many, for what) before any node evaluates,
// within a quota per account, so an agency pseudonymising a whole
// population is visible to every auditor and stopped at its quota.
//
// # Why joint-Feldman, not GJKR
//
// GJKR (Gennaro, Jarecki, Krawczyk, Rabin, EUROCRYPT 1999 / J. Cryptology
// 2007) add a Pedersen-committed first phase because an active dealer in
// joint-Feldman can see the others' commitments, then make itself
// disqualified and bias the distribution of the public key. Under our
// model no node deviates, so the key is uniform; and even against that
// bias, discrete-log-based uses of the key stay secure (Gennaro et al.,
// "Secure applications of Pedersen's distributed key generation
// protocol", CT-RSA 2003). Joint-Feldman costs one round less and keeps
// the public commitments the verification keys come from. Shares that do
// not match their commitments abort the ceremony (no complaint round:
// with honest nodes a mismatch is a fault, and a new ceremony is cheap).
//
// # Proofs and speed
//
// The batched DLEQ proofs are RFC 9497's (GenerateProof and VerifyProof
// with ComputeComposites), byte for byte — the RFC's test vectors check
// the proofs too — but the composites M = Σ d_i·B_i and Z = Σ d_i·Z_i,
// sums over public points with public weights, are computed as
// variable-time multiscalar multiplications (curve25519-voi, Pippenger)
// instead of circl zk/dleq's one multiplication per element. Per id a
// round then costs one multiplication to blind, one per evaluating node,
// and one per partial to combine: 1 + 2t, against circl's single-key
// round's 6 (blind, evaluate, prove, verify twice, unblind). make bench
// reports both in one run.
//
// # Secrets and constant time
//
// A KeyShare is secret (its node keeps it in a 0600 file; never logged,
// never sent); a Blinding is the client's secret for one batch. Scalar
// multiplications by secrets (shares, blinds and their inverses, proof
// nonces) use circl's constant-time ristretto255 arithmetic; only the
// DLEQ composites and proof checks, over public values, run in variable
// time. Randomness (blinds, polynomials, proof nonces) comes from
// crypto/rand.
//
// # Concurrency
//
// Client, Public and KeyShare are safe for concurrent use once built;
// Blind, Evaluate and Finalize spread a batch over all CPUs.
//
// # References
//
//   - RFC 9497, Oblivious Pseudorandom Functions (OPRFs) Using Prime-Order
//     Groups (2023).
//   - S. Jarecki, A. Kiayias, H. Krawczyk, J. Xu: TOPPSS: Cost-minimal
//     Password-Protected Secret Sharing based on Threshold OPRF, ACNS 2017.
//   - R. Gennaro, S. Jarecki, H. Krawczyk, T. Rabin: Secure Distributed Key
//     Generation for Discrete-Log Based Cryptosystems, EUROCRYPT 1999.
//   - P. Feldman: A Practical Scheme for Non-interactive Verifiable Secret
//     Sharing, FOCS 1987.
package pseudonym
