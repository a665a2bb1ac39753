//go:build !(linux && (amd64 || arm64))

package chain

import "os"

// asyncSyncer falls back to a plain fsync on platforms without the Linux
// AIO path (walsync_linux.go).
type asyncSyncer struct{ f *os.File }

func newAsyncSyncer(f *os.File) *asyncSyncer { return &asyncSyncer{f: f} }
func (s *asyncSyncer) sync() error           { return s.f.Sync() }
func (s *asyncSyncer) close()                {}
