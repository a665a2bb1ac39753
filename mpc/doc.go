// The package documentation is in mpc.go.
package mpc
