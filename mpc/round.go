package mpc

import (
	"context"
	"fmt"
	"sync"
)

// callFunc sends a message to a participant's service and returns its
// answer; for this node itself it serves the message locally.
type callFunc func(ctx context.Context, node, svc string, body []byte) ([]byte, error)

// answer is one participant's answer in a round: decoded, raw (the HE
// ceremony's transcript keeps it), or what went wrong.
type answer[T any] struct {
	Value T
	Raw   []byte
	Err   error
}

// ask sends each participant its message of a round in parallel and opens
// each answer: it must be signed by that participant's node account on the
// ledger and decode into a T. Answers come back in participant order, each
// with its own error; the caller decides how many it needs.
func ask[T any](ctx context.Context, call callFunc, ledger Ledger, svc string, nodes []Participant, body func(node string) []byte) []answer[T] {
	out := make([]answer[T], len(nodes))
	var wg sync.WaitGroup
	for i, q := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &out[i]
			if a.Raw, a.Err = call(ctx, q.Node, svc, body(q.Node)); a.Err != nil {
				a.Err = fmt.Errorf("mpc: %s at %s: %w", svc, q.Node, a.Err)
				return
			}
			a.Err = openFrom(ledger, svc, a.Raw, q, &a.Value)
		}()
	}
	wg.Wait()
	return out
}

// round is a ceremony round every participant must answer: ask, failing
// on the first participant (in order) whose answer is missing or does not
// open.
func round[T any](ctx context.Context, call callFunc, ledger Ledger, svc string, nodes []Participant, body func(node string) []byte) ([]answer[T], error) {
	out := ask[T](ctx, call, ledger, svc, nodes, body)
	for _, a := range out {
		if a.Err != nil {
			return nil, a.Err
		}
	}
	return out, nil
}

// same is a round's body: one message for every participant.
func same(msg []byte) func(string) []byte { return func(string) []byte { return msg } }

// openFrom opens a participant's answer: signed by that participant.
func openFrom(ledger Ledger, svc string, raw []byte, q Participant, v any) error {
	signer, err := open(ledger, svc, raw, v)
	if err != nil {
		return err
	}
	if signer != q.Address {
		return fmt.Errorf("mpc: %s answer of %s signed by %s", svc, q.Node, signer)
	}
	return nil
}
