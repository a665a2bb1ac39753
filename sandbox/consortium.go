package sandbox

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/datasandbox/datasandbox/policies"
)

// Pseudonymiser computes the consortium pseudonyms of a batch of a
// column's ids, in order (the threshold OPRF of mpc/pseudonym, through
// this node: each call is one pseudonym.batch on the ledger). The ids
// must not leave the node except blinded.
type Pseudonymiser func(ctx context.Context, column string, ids [][]byte) ([][]byte, error)

// Consortium pipelining: ids are sent in batches of ConsortiumBatch, with
// up to ConsortiumInflight batches evaluating while the upload streams on.
const (
	ConsortiumBatch    = 4096
	ConsortiumInflight = 4
)

// ErrNoConsortium: a schema asks for consortium pseudonyms and this node
// has no pseudonym service (or no ceremony yet).
var ErrNoConsortium = errors.New("sandbox: consortium pseudonyms are not available on this node")

// consortiumColumns returns whether the schema has identifier columns
// with consortium pseudonyms.
func consortiumColumns(s *policies.Schema) bool {
	for _, c := range s.Columns {
		if c.Class == policies.Identifier && c.Pseudonym == policies.PseudonymConsortium {
			return true
		}
	}
	return false
}

type pipeResult struct {
	ps  [][]byte
	err error
}

// consortiumPipe pseudonymises one column as the upload streams: the
// ingest loop adds ids; full batches go to the Pseudonymiser
// concurrently; one goroutine writes their pseudonyms to the column in
// the rows' order. Memory is bounded by ConsortiumInflight batches.
type consortiumPipe struct {
	ctx    context.Context
	cancel context.CancelFunc
	col    string
	fn     Pseudonymiser
	buf    [][]byte
	order  chan chan pipeResult
	done   chan error
	failed chan struct{} // closed on the first error
}

func newConsortiumPipe(ctx context.Context, col string, w *colWriter, fn Pseudonymiser) *consortiumPipe {
	ctx, cancel := context.WithCancel(ctx)
	p := &consortiumPipe{ctx: ctx, cancel: cancel, col: col, fn: fn, order: make(chan chan pipeResult, ConsortiumInflight),
		done: make(chan error, 1), failed: make(chan struct{})}
	go func() {
		var first error
		for ch := range p.order {
			r := <-ch
			if first != nil {
				continue
			}
			if r.err != nil {
				first = fmt.Errorf("sandbox: consortium pseudonyms of column %s: %w", col, r.err)
				close(p.failed)
				cancel()
				continue
			}
			for _, ps := range r.ps {
				if len(ps) < PseudonymSize {
					first = fmt.Errorf("sandbox: a consortium pseudonym of %d bytes", len(ps))
					close(p.failed)
					cancel()
					break
				}
				// Truncated like the agency's pseudonyms: joins need
				// equality only, and 128 bits keep collisions negligible.
				if err := w.raw(ps[:PseudonymSize]); err != nil {
					first = err
					close(p.failed)
					cancel()
					break
				}
			}
		}
		p.done <- first
	}()
	return p
}

// add takes one id (validated like an agency-pseudonymised one).
func (p *consortiumPipe) add(v string) error {
	if !utf8.ValidString(v) {
		return errors.New("not valid UTF-8")
	}
	if v == "" {
		return errors.New("empty value")
	}
	p.buf = append(p.buf, []byte(v))
	if len(p.buf) == ConsortiumBatch {
		return p.flush()
	}
	return nil
}

// errPipe marks a pipeline failure (not the line's fault): stop returns
// the cause.
var errPipe = errors.New("sandbox: the pseudonym pipeline stopped")

func (p *consortiumPipe) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	batch := p.buf
	p.buf = nil
	ch := make(chan pipeResult, 1)
	go func() {
		ps, err := p.fn(p.ctx, p.col, batch)
		if err == nil && len(ps) != len(batch) {
			err = fmt.Errorf("%d pseudonyms for %d ids", len(ps), len(batch))
		}
		ch <- pipeResult{ps, err}
	}()
	select {
	case p.order <- ch:
		return nil
	case <-p.failed:
		return errPipe
	case <-p.ctx.Done():
		return errPipe
	}
}

// stop ends a failed pipeline and returns why it failed.
func (p *consortiumPipe) stop() error {
	p.cancel()
	close(p.order)
	if err := <-p.done; err != nil {
		return err
	}
	return p.ctx.Err()
}

// finish sends the last batch and waits for every pseudonym to be
// written.
func (p *consortiumPipe) finish() error {
	err := p.flush()
	close(p.order)
	if werr := <-p.done; werr != nil {
		return werr
	}
	p.cancel()
	return err
}

// abort stops the pipeline (on an ingest error).
func (p *consortiumPipe) abort() {
	p.cancel()
	close(p.order)
	<-p.done
}
