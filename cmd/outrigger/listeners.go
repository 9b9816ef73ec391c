package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// listeners are the sockets bound at start. They are bound once: a reload
// that changes an address is applied except for the address, which needs a
// restart (and is logged as such).
type listeners struct {
	admin, outbound, inbound, appAPI net.Listener
}

// bind opens every listener in want (empty address: that listener is off).
// On failure it closes what it opened.
func bind(admin, outbound, inbound, appAPI string) (*listeners, error) {
	var l listeners
	for _, b := range []struct {
		name, addr string
		dst        *net.Listener
	}{
		{"admin", admin, &l.admin},
		{"outbound", outbound, &l.outbound},
		{"inbound", inbound, &l.inbound},
		{"app_api", appAPI, &l.appAPI},
	} {
		if b.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("listeners.%s: %w", b.name, err)
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
