// Package api is the node's HTTP interface (CONTRACT.md): JSON under /v1,
// errors as RFC 9457 problem+json, built on Echo. Echo stays inside this
// package; handlers call the components through the small interfaces
// declared here and pass domain types or bytes.
//
// Errors become HTTP statuses in one place, errorHandler, by errors.Is on
// the components' sentinel errors; internal detail never reaches a client.
package api
