// Package client is a Go client of the data-sandbox API (package api): it
// signs each request with the caller's account key (RFC 9421 HTTP Message
// Signatures, as docs/models.md describes), retries requests a node turned
// away for now, and turns problem+json answers into errors that quote the
// node's reason. sandboxctl and its web console are built on it; other
// programs may use it the same way.
//
// Beyond the raw request ([Client.Do]) and the streamed upload
// ([Client.Upload]), it offers what an auditor needs off the node:
//
//   - [Source], an [audit.Source] over HTTP: a ledger's blocks and entries,
//     streamed a page at a time;
//   - the export format ([WriteExport], [OpenExport]): a ledger copied to a
//     file and verified offline later;
//   - [Verify] and [VerifyExport]: the whole verification of `sandboxctl
//     ledger verify`, in named steps (the checkpoint, the replay, the
//     node's state hash, consistency with the checkpoint verified last time,
//     the delivered results' hashes).
//
// The key never leaves the process: only signatures travel. A Client is safe
// for concurrent use.
package client
