package chain

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// chain's node-to-node requests travel over the Raft port (see rpcMagic).
// A request is op u8 | length u32 | payload; a response is
// status u8 | length u32 | payload. Connections are kept and reused.
const (
	opAppend byte = 1 // payload: count u32, then length-prefixed entries
	opJoin   byte = 2 // payload: a joinRequest
	// opReadIndex asks the leader how many entries it has applied; the
	// answer is a u64. Followers use it for read-your-writes reads.
	opReadIndex byte = 3
	// opFetch asks a peer for a blob its Blobs hook serves (job results).
	opFetch byte = 4
	// opCall carries a request to a service the node's Services hook
	// serves (mpc/ protocols): service string, then the body.
	opCall byte = 5
)

const maxRPCPayload = 64 << 20

// Error codes carried over the wire, so that errors.Is still works on the
// caller's side of a forwarded request.
// A refusal by the state machine that wraps one of its Refusals travels as
// refusalBase + that sentinel's index.
var wireErrors = []error{nil, ErrMalformedEntry, ErrBadSignature, ErrRejected, ErrNoLeader, ErrStopped, ErrNotAdmitted, ErrBadKey}

const (
	refusalBase = 64
	maxRefusals = 64
)

func (n *Node) errCode(err error) byte {
	if errors.Is(err, ErrRejected) {
		for i, r := range n.ledger.refusals {
			if errors.Is(err, r) {
				return byte(refusalBase + i)
			}
		}
	}
	for i, e := range wireErrors[1:] {
		if errors.Is(err, e) {
			return byte(i + 1)
		}
	}
	return 255
}

// remoteError is an error that happened on another node (or a refusal
// reported by the state machine): chain's sentinel, and for a refusal the
// state machine's own.
type remoteError struct {
	sentinel error
	refusal  error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() []error {
	var out []error
	for _, x := range []error{e.sentinel, e.refusal} {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

func (n *Node) decodeErr(code byte, msg string) error {
	switch {
	case code == 0:
		return nil
	case code >= refusalBase && int(code-refusalBase) < len(n.ledger.refusals):
		return &remoteError{sentinel: ErrRejected, refusal: n.ledger.refusals[code-refusalBase], msg: msg}
	case int(code) < len(wireErrors):
		return &remoteError{sentinel: wireErrors[code], msg: msg}
	}
	return &remoteError{msg: msg}
}

func appendString(b []byte, s string) []byte {
	if len(s) > 65535 {
		s = s[:65535]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (r *reader) str() string { return string(r.next(int(r.u16()))) }

type rpcClient struct {
	tls  *tls.Config // nil: plain TCP
	wrap func(net.Conn) net.Conn
	mu   sync.Mutex
	idle map[string][]net.Conn
}

func (c *rpcClient) get(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	if l := c.idle[addr]; len(l) > 0 {
		conn := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := dialPeer(ctx, c.tls, c.wrap, addr)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte{rpcMagic}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *rpcClient) put(addr string, conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		c.idle = make(map[string][]net.Conn)
	}
	if len(c.idle[addr]) >= 8 {
		conn.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], conn)
}

func (c *rpcClient) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.idle {
		for _, conn := range l {
			conn.Close()
		}
	}
	c.idle = nil
}

// call sends one request and waits for its response, within ctx.
func (c *rpcClient) call(ctx context.Context, addr string, op byte, payload []byte) (byte, []byte, error) {
	conn, err := c.get(ctx, addr)
	if err != nil {
		return 0, nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	req := make([]byte, 0, 5+len(payload))
	req = append(req, op)
	req = binary.BigEndian.AppendUint32(req, uint32(len(payload)))
	req = append(req, payload...)
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return 0, nil, err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		conn.Close()
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxRPCPayload {
		conn.Close()
		return 0, nil, fmt.Errorf("chain: rpc response of %d bytes", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(conn, resp); err != nil {
		conn.Close()
		return 0, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	c.put(addr, conn)
	return hdr[0], resp, nil
}

// serveRPC answers requests on one connection until it closes.
func (n *Node) serveRPC(conn net.Conn) {
	defer conn.Close()
	// The port accepts before Raft exists (a restarting node is dialled by
	// its peers at once): wait for it.
	select {
	case <-n.ready:
	case <-n.ctx.Done():
		return
	}
	n.rpcConns.Add(1)
	defer n.rpcConns.Done()
	br := bufio.NewReader(conn)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(hdr[1:])
		if size > maxRPCPayload {
			return
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		_ = conn.SetReadDeadline(time.Time{})
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		status, resp := n.handleRPC(ctx, hdr[0], payload)
		cancel()
		out := make([]byte, 0, 5+len(resp))
		out = append(out, status)
		out = binary.BigEndian.AppendUint32(out, uint32(len(resp)))
		out = append(out, resp...)
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

func (n *Node) handleRPC(ctx context.Context, op byte, payload []byte) (byte, []byte) {
	switch op {
	case opAppend:
		raws, err := parseAppendBatch(payload)
		if err != nil {
			return n.errCode(err), []byte(err.Error())
		}
		count := uint32(len(raws))
		// Each entry goes through this node's proposer, which batches them;
		// no further forwarding, so a stale leader view cannot loop.
		receipts := make([]Receipt, count)
		errs := make([]error, count)
		var wg sync.WaitGroup
		for i := range raws {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				receipts[i], errs[i] = n.appendLocal(ctx, raws[i])
			}(i)
		}
		wg.Wait()
		out := binary.BigEndian.AppendUint32(nil, count)
		for i := range raws {
			out = append(out, n.errCode(errs[i]))
			if errs[i] != nil {
				out[len(out)-1] = n.errCode(errs[i])
				out = binary.BigEndian.AppendUint64(out, 0)
				out = appendString(out, errs[i].Error())
				continue
			}
			out[len(out)-1] = 0
			if receipts[i].Duplicate {
				out[len(out)-1] = 254
			}
			out = binary.BigEndian.AppendUint64(out, receipts[i].Index)
			out = appendString(out, "")
		}
		return 0, out
	case opReadIndex:
		if !n.IsLeader() {
			return n.errCode(ErrNoLeader), []byte(fmt.Sprintf("chain: %s is not the leader", n.cfg.ID))
		}
		if err := n.leaderSynced(ctx); err != nil {
			return n.errCode(err), []byte(err.Error())
		}
		return 0, binary.BigEndian.AppendUint64(nil, n.ledger.Applied())
	case opFetch:
		if n.cfg.Blobs == nil {
			return 255, []byte("chain: this node serves no blobs")
		}
		b, err := n.cfg.Blobs(string(payload))
		if err != nil {
			return 255, []byte(err.Error())
		}
		return 0, b
	case opCall:
		if n.cfg.Services == nil {
			return 255, []byte("chain: this node serves no services")
		}
		r := reader{b: payload}
		service := r.str()
		if r.err != nil {
			return 255, []byte("chain: malformed call")
		}
		b, err := n.cfg.Services(ctx, service, r.b[r.off:])
		if err != nil {
			return 255, []byte(err.Error())
		}
		return 0, b
	case opJoin:
		req, err := parseJoinRequest(payload)
		if err != nil {
			return n.errCode(err), []byte(err.Error())
		}
		if err := n.admit(ctx, req); err != nil {
			return n.errCode(err), []byte(err.Error())
		}
		return 0, nil
	}
	return 255, []byte(fmt.Sprintf("chain: unknown rpc op %d", op))
}

// maxForwardBatch bounds the entries of one forwarded batch (followers send
// at most MaxBlockEntries).
const maxForwardBatch = 4096

// parseAppendBatch reads a forwarded batch: count u32, then u32-length-
// prefixed entries, nothing after.
func parseAppendBatch(payload []byte) ([][]byte, error) {
	r := reader{b: payload}
	count := r.u32()
	if r.err != nil || count > maxForwardBatch || uint64(count)*4 > uint64(len(payload)) {
		return nil, fmt.Errorf("%w: malformed append request", ErrMalformedEntry)
	}
	raws := make([][]byte, count)
	for i := range raws {
		raws[i] = r.next(int(r.u32()))
	}
	if r.err != nil || r.off != len(payload) {
		return nil, fmt.Errorf("%w: malformed append request", ErrMalformedEntry)
	}
	return raws, nil
}

// forward sends a batch of verified entries to the leader.
func (n *Node) forward(ctx context.Context, addr string, raws [][]byte) ([]Receipt, []error, error) {
	size := 4
	for _, r := range raws {
		size += 4 + len(r)
	}
	payload := make([]byte, 0, size)
	payload = binary.BigEndian.AppendUint32(payload, uint32(len(raws)))
	for _, r := range raws {
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(r)))
		payload = append(payload, r...)
	}
	status, resp, err := n.rpc.call(ctx, addr, opAppend, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: forwarding to leader %s: %v", ErrNoLeader, addr, err)
	}
	if status != 0 {
		return nil, nil, n.decodeErr(status, string(resp))
	}
	r := reader{b: resp}
	if int(r.u32()) != len(raws) {
		return nil, nil, fmt.Errorf("chain: leader answered a different number of entries")
	}
	receipts := make([]Receipt, len(raws))
	errs := make([]error, len(raws))
	for i := range raws {
		code := r.u8()
		idx := r.u64()
		msg := r.str()
		switch code {
		case 0, 254:
			receipts[i] = Receipt{Index: idx, Duplicate: code == 254, LeafHash: LeafHash(raws[i])}
		default:
			errs[i] = n.decodeErr(code, msg)
		}
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("chain: malformed append response")
	}
	return receipts, errs, nil
}

// joinRequest asks the leader to add a node as a voter. It is signed by the
// node's account key, so the leader can check the account's join permission.
type joinRequest struct {
	ID, Addr  string
	Algorithm Algorithm
	PublicKey []byte
	Time      time.Time
	Signature []byte
}

func (j *joinRequest) message() []byte {
	return []byte(fmt.Sprintf("datasandbox/join/v1\n%s\n%s\n%d\n", j.ID, j.Addr, j.Time.UnixNano()))
}

func (j *joinRequest) marshal() []byte {
	b := appendString(nil, j.ID)
	b = appendString(b, j.Addr)
	b = append(b, byte(j.Algorithm))
	b = appendString(b, string(j.PublicKey))
	b = binary.BigEndian.AppendUint64(b, uint64(j.Time.UnixNano()))
	return appendString(b, string(j.Signature))
}

func parseJoinRequest(b []byte) (*joinRequest, error) {
	r := reader{b: b}
	j := &joinRequest{ID: r.str(), Addr: r.str(), Algorithm: Algorithm(r.u8()), PublicKey: []byte(r.str())}
	j.Time = time.Unix(0, int64(r.u64()))
	j.Signature = []byte(r.str())
	if r.err != nil || r.off != len(b) || j.ID == "" || j.Addr == "" {
		return nil, fmt.Errorf("%w: malformed join request", ErrNotAdmitted)
	}
	// Verify the signature as an entry would be: reuse the entry checks.
	e := &Entry{Kind: "node.join", Algorithm: j.Algorithm, PublicKey: j.PublicKey, Time: j.Time, Payload: j.message(), Signature: j.Signature}
	if err := e.Verify(); err != nil {
		return nil, fmt.Errorf("%w: join request: %v", ErrNotAdmitted, err)
	}
	if d := time.Since(j.Time); d > 5*time.Minute || d < -5*time.Minute {
		return nil, fmt.Errorf("%w: join request is stale", ErrNotAdmitted)
	}
	return j, nil
}
