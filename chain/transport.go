package chain

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// rpcMagic starts a connection that carries chain's own requests (forwarded
// appends, joins) rather than Raft's. Raft's first byte is an RPC type
// below 16, so one byte tells the two apart and one TCP port serves both.
const rpcMagic = 0xD5

// muxLayer is a raft.StreamLayer over one TCP listener that hands Raft's
// connections to Raft and chain's own to serveRPC.
type muxLayer struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config // nil: plain TCP
	wrap      func(net.Conn) net.Conn
	raftConns chan net.Conn
	serveRPC  func(net.Conn)
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ raft.StreamLayer = (*muxLayer)(nil)

func newMuxLayer(ln net.Listener, advertise net.Addr, serveRPC func(net.Conn), tlsConf *tls.Config, wrap func(net.Conn) net.Conn) *muxLayer {
	m := &muxLayer{ln: ln, advertise: advertise, tls: tlsConf, wrap: wrap, raftConns: make(chan net.Conn), serveRPC: serveRPC, done: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *muxLayer) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *muxLayer) route(c net.Conn) {
	if m.wrap != nil {
		c = m.wrap(c)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if first[0] == rpcMagic {
		_, _ = br.Discard(1)
		m.serveRPC(pc)
		return
	}
	select {
	case m.raftConns <- pc:
	case <-m.done:
		c.Close()
	}
}

func (m *muxLayer) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *muxLayer) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

func (m *muxLayer) Addr() net.Addr { return m.advertise }

func (m *muxLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialPeer(ctx, m.tls, m.wrap, string(addr))
}

// dialPeer connects to a peer's node-to-node port, over mutual TLS when
// conf is set (the handshake completes here, so a peer whose certificate
// does not verify fails the dial with the reason).
func dialPeer(ctx context.Context, conf *tls.Config, wrap func(net.Conn) net.Conn, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	if conf == nil {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil {
			return nil, serr
		}
		c := conf.Clone()
		c.ServerName = host
		d := tls.Dialer{Config: c}
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil || wrap == nil {
		return conn, err
	}
	return wrap(conn), nil
}

// NodeTLS builds the mutual-TLS configuration of a node's node-to-node
// port: its certificate (also presented as a client) and the consortium's
// CA, which must have signed every peer's certificate for the address
// peers dial.
func NodeTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca,
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// peekedConn reads through the buffered reader that peeked its first byte.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
