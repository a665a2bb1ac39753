// Package mpc will hold the multiparty protocols between agency nodes
// (collective CKKS key generation, t-of-N threshold decryption to the
// requester). It arrives with the homomorphic-mode issue; nothing here is
// implemented yet.
package mpc
