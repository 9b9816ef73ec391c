package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The cache keeps at most maxTLSSessions sessions, however many
// endpoints a cluster has had; storing again the session of an address
// it holds makes no room.
func TestTLSSessionsAreBounded(t *testing.T) {
	var s tlsSessions
	cs := new(tls.ClientSessionState)
	for i := range 2 * maxTLSSessions {
		s.forAddr(fmt.Sprintf("10.0.%d.%d:443", i/256, i%256)).Put("svc.test", cs)
		if n := len(s.m); n > maxTLSSessions {
			t.Fatalf("%d sessions after %d puts, want at most %d", n, i+1, maxTLSSessions)
		}
	}
	last := s.forAddr(fmt.Sprintf("10.0.%d.%d:443", (2*maxTLSSessions-1)/256, (2*maxTLSSessions-1)%256))
	if _, ok := last.Get("svc.test"); !ok {
		t.Fatal("the last session stored is gone")
	}
	before := len(s.m)
	last.Put("svc.test", cs)
	if _, ok := last.Get("svc.test"); !ok || len(s.m) != before {
		t.Fatalf("storing again a held address: %d sessions, want %d", len(s.m), before)
	}
	last.Put("svc.test", nil)
	if _, ok := last.Get("svc.test"); ok {
		t.Fatal("a nil session left the entry")
	}
}

// Many connections dialled at once to two endpoints, under TLS 1.2 and
// 1.3, share one cache safely (run with -race) and resume each
// endpoint's own sessions only.
func TestTLSSessionsUnderParallelDials(t *testing.T) {
	ca := newCA(t, "parallel CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cert := serverCert(t, ca, "svc.test").tlsCert(t)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(ver), func(t *testing.T) {
			var servers []net.Listener
			var wg sync.WaitGroup
			for range 2 {
				ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: ver})
				if err != nil {
					t.Fatal(err)
				}
				servers = append(servers, ln)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						wg.Add(1)
						go func() {
							defer wg.Done()
							defer c.Close()
							_ = c.SetDeadline(time.Now().Add(5 * time.Second))
							if _, err := c.Write([]byte("x")); err != nil {
								return
							}
							_, _ = io.Copy(io.Discard, c)
						}()
					}
				}()
			}
			defer func() {
				for _, ln := range servers {
					ln.Close()
				}
				wg.Wait()
			}()
			var s tlsSessions
			var resumed atomic.Int64
			var dials sync.WaitGroup
			for i := range 64 {
				dials.Add(1)
				go func() {
					defer dials.Done()
					addr := servers[i%2].Addr().String()
					c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "svc.test",
						ClientSessionCache: s.forAddr(addr)})
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					// A TLS 1.3 ticket comes after the handshake: the
					// read takes it in.
					if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
						t.Error(err)
						return
					}
					if c.ConnectionState().DidResume {
						resumed.Add(1)
					}
				}()
				if i == 1 {
					// The first connection to each endpoint has made its
					// session before the rest dial.
					dials.Wait()
				}
			}
			dials.Wait()
			if n := resumed.Load(); n != 62 {
				t.Fatalf("%d of 62 connections resumed", n)
			}
		})
	}
}
