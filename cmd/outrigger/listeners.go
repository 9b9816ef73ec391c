package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// boundAddrs are the addresses the sidecar actually listens on, with any
// port 0 resolved. It is what --addr-file holds, as JSON.
type boundAddrs struct {
	Admin    string `json:"admin"`
	Outbound string `json:"outbound,omitempty"`
	Inbound  string `json:"inbound,omitempty"`
	AppAPI   string `json:"app_api,omitempty"`
	PID      int    `json:"pid"`
}

// listeners are the sockets the sidecar serves. The admin and app API
// listeners are bound once, at start: a reload that changes their address
// is applied except for the address, which needs a restart (and is logged
// as such). The outbound and inbound listeners move when a reload changes
// their address or turns them on or off (see moveListeners).
type listeners struct {
	admin, outbound, inbound, appAPI net.Listener
}

// bind opens every listener in want (empty address: that listener is off).
// On failure it closes what it opened.
func bind(admin, outbound, inbound, appAPI string) (*listeners, error) {
	var l listeners
	for _, b := range []struct {
		key, addr string // key: the config key of the address
		dst       *net.Listener
	}{
		{"admin.address", admin, &l.admin},
		{"listeners.outbound.address", outbound, &l.outbound},
		{"listeners.inbound.address", inbound, &l.inbound},
		{"listeners.app_api.address", appAPI, &l.appAPI},
	} {
		if b.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("%s: %w", b.key, err)
		}
		*b.dst = ln
	}
	return &l, nil
}

// close closes every open listener (used only when start fails: once
// serving, each listener is closed by the server that owns it).
func (l *listeners) close() {
	for _, ln := range []net.Listener{l.admin, l.outbound, l.inbound, l.appAPI} {
		if ln != nil {
			ln.Close()
		}
	}
}

func (l *listeners) addrs() boundAddrs {
	a := func(ln net.Listener) string {
		if ln == nil {
			return ""
		}
		return ln.Addr().String()
	}
	return boundAddrs{Admin: a(l.admin), Outbound: a(l.outbound), Inbound: a(l.inbound), AppAPI: a(l.appAPI), PID: os.Getpid()}
}

// writeAddrFile writes addrs as JSON to path atomically (write a temporary
// file in the same directory, then rename), so a reader polling for the file
// never sees it half written.
func writeAddrFile(path string, addrs boundAddrs) error {
	b, err := json.MarshalIndent(addrs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".outrigger-addrs-*")
	if err != nil {
		return fmt.Errorf("addr file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("addr file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("addr file: %w", err)
	}
	return nil
}

// proxyAddrs are the configured addresses of the proxy's listeners, ""
// for one that is off.
type proxyAddrs struct {
	outbound, inbound string
}

// proxyAddrsOf is what cfg asks the proxy to listen on: the outbound
// listener unless disabled, the inbound one when it has an app.
func proxyAddrsOf(cfg *config.Config) proxyAddrs {
	var a proxyAddrs
	if !cfg.Listeners.Outbound.Disabled {
		a.outbound = cfg.Listeners.Outbound.Address
	}
	if cfg.Listeners.Inbound.App != "" {
		a.inbound = cfg.Listeners.Inbound.Address
	}
	return a
}

// listenerMove is a proxy listener that a reload moves: to a new address
// (ln is bound there), or off (addr is ""); or a new spelling of the
// address already bound (see respelled), which moves nothing.
type listenerMove struct {
	l    proxy.Listener
	addr string       // the configured address, "" for off
	ln   net.Listener // bound at addr; nil for off or respelled
}

// respelled reports a new spelling of the bound address: an address,
// and nothing bound for it.
func (m listenerMove) respelled() bool { return m.addr != "" && m.ln == nil }

// serveResult is a server's end: its name and what its Serve returned.
type serveResult struct {
	name string
	err  error
}

// serve runs fn, a server's Serve, and sends its result to serveErr.
func (s *sidecar) serve(name string, fn func() error) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	s.serveLocked(name, fn)
}

func (s *sidecar) serveLocked(name string, fn func() error) {
	s.servers++
	go func() { s.serveErr <- serveResult{name, fn()} }()
}

// serveProxy serves listener l on ln: the proxy's own server, with the
// access log around its handler (proxy.Options.Wrap).
func (s *sidecar) serveProxy(ln net.Listener, l proxy.Listener) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	s.serveProxyLocked(ln, l)
}

func (s *sidecar) serveProxyLocked(ln net.Listener, l proxy.Listener) {
	s.serveLocked(l.String(), func() error { return s.proxy.Serve(ln, l) })
}

// bindMoves binds the proxy listeners whose address cfg changes. Nothing
// is bound if one of them cannot be: the error names its key, and the
// sidecar's own listener when that is what holds the port.
func (s *sidecar) bindMoves(cfg *config.Config) ([]listenerMove, error) {
	want := proxyAddrsOf(cfg)
	s.lnMu.Lock()
	have := s.proxyAddrs
	own := *s.lns
	s.lnMu.Unlock()
	var moves []listenerMove
	for _, m := range []struct {
		l          proxy.Listener
		have, want string
		cur        net.Listener
	}{{proxy.Outbound, have.outbound, want.outbound, own.outbound}, {proxy.Inbound, have.inbound, want.inbound, own.inbound}} {
		if m.have == m.want {
			continue
		}
		mv := listenerMove{l: m.l, addr: m.want}
		switch {
		case m.want == "":
		case m.cur != nil && sameSocket(m.want, m.cur.Addr()):
			// Binding it again would fail: the socket is ours already
			// (ln stays nil: respelled).
		default:
			ln, err := net.Listen("tcp", m.want)
			if err != nil {
				closeMoves(moves)
				if holder := own.holding(m.want); holder != "" && errors.Is(err, syscall.EADDRINUSE) {
					err = fmt.Errorf("%w (the port is held by this sidecar's %s listener, which a reload closes only after binding the new addresses: move through another port, or restart)", err, holder)
				}
				return nil, fmt.Errorf("listeners.%s.address: %w", m.l, err)
			}
			mv.ln = ln
		}
		moves = append(moves, mv)
	}
	return moves, nil
}

// sameSocket reports whether addr, a configured listen address, names the
// socket bound at bound: the same port, and the same IP or both wildcard
// hosts. "", "0.0.0.0" and "::" are the same socket for net.Listen("tcp"),
// which binds a dual-stack IPv6 socket for each; a host name is resolved
// as net.Listen resolves it (IPv4 first).
func sameSocket(addr string, bound net.Addr) bool {
	b, ok := bound.(*net.TCPAddr)
	if !ok {
		return false
	}
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || a.Port != b.Port {
		return false
	}
	wild := func(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }
	if wild(a.IP) || wild(b.IP) {
		return wild(a.IP) && wild(b.IP)
	}
	return a.IP.Equal(b.IP)
}

// holding names the listener of l bound to addr's port ("" for none):
// binding addr then fails for the sidecar's own sake.
func (l listeners) holding(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return ""
	}
	for _, h := range []struct {
		name string
		ln   net.Listener
	}{{"admin", l.admin}, {"outbound", l.outbound}, {"inbound", l.inbound}, {"app_api", l.appAPI}} {
		if h.ln == nil {
			continue
		}
		if _, p, err := net.SplitHostPort(h.ln.Addr().String()); err == nil && p == port {
			return h.name
		}
	}
	return ""
}

// closeMoves closes the listeners bound for moves not made.
func closeMoves(moves []listenerMove) {
	for _, m := range moves {
		if m.ln != nil {
			m.ln.Close()
		}
	}
}

// moveListeners makes the moves of an applied reload: each new listener
// serves at once, and the one it replaces stops accepting before
// moveListeners returns, then drains its connections within drain
// (proxy.BeginRetire) while the new one serves.
// The address file is rewritten.
func (s *sidecar) moveListeners(moves []listenerMove, drain time.Duration) {
	if len(moves) == 0 {
		return
	}
	type moved struct {
		l        proxy.Listener
		from, to string
	}
	var done []moved
	s.lnMu.Lock()
	for _, m := range moves {
		slot, addr := &s.lns.outbound, &s.proxyAddrs.outbound
		if m.l == proxy.Inbound {
			slot, addr = &s.lns.inbound, &s.proxyAddrs.inbound
		}
		*addr = m.addr
		if m.respelled() {
			continue
		}
		old := *slot
		*slot = m.ln
		mv := moved{l: m.l}
		if m.ln != nil {
			mv.to = m.ln.Addr().String()
			s.serveProxyLocked(m.ln, m.l)
		}
		if old != nil {
			mv.from = old.Addr().String()
			// The old address accepts no more before the reload is
			// published: a reload right after may bind it again.
			drainOld := s.proxy.BeginRetire(old)
			s.retiring.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), drain)
				defer cancel()
				if err := drainOld(ctx); err != nil {
					s.log.Warn("listener drain timed out; closed its remaining connections",
						zap.String(fieldListener, m.l.String()), zap.String("address", mv.from), zap.Error(err))
				}
			})
		}
		done = append(done, mv)
	}
	addrs := s.lns.addrs()
	s.lnMu.Unlock()
	for _, mv := range done {
		s.log.Info("listener moved", zap.String(fieldListener, mv.l.String()), zap.String("from", mv.from), zap.String("to", mv.to))
	}
	if len(done) > 0 && s.opts.addrFile != "" {
		if err := writeAddrFile(s.opts.addrFile, addrs); err != nil {
			s.log.Error("cannot write the address file", zap.Error(err))
		}
	}
}
