package sockio

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// More connections become readable at once than one epoll_wait takes
// (len(poller.events)); once the poller has taken a full batch, nothing
// new happens on any socket, so the rest must be taken without waiting
// for a further event.
func TestMoreEventsThanOneBatch(t *testing.T) {
	const n = 3 * len(poller{}.events)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	clients := make([]net.Conn, 0, n)
	peers := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		for _, c := range peers {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		clients = append(clients, Wrap(c))
		peers = append(peers, s)
	}
	pl := clients[0].(*Conn).pl
	for _, c := range clients {
		if c.(*Conn).pl != pl {
			t.Fatal("the connections are not on one poller")
		}
	}

	results := make(chan error, n)
	var started sync.WaitGroup
	for _, c := range clients {
		started.Add(1)
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1)
			// The first Read finds the socket empty and waits.
			started.Done()
			_, err := c.Read(buf)
			results <- err
		}()
	}
	started.Wait()
	// Every Read has made its first attempt (it clears ready first).
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range clients {
		for c.(*Conn).r.ready.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the reads never started")
			}
			runtime.Gosched()
		}
	}
	// Hold the poller while every peer writes, so that the events pile
	// up in the epoll instance beyond one batch.
	pl.mu.Lock()
	for _, s := range peers {
		if _, err := s.Write([]byte{1}); err != nil {
			pl.mu.Unlock()
			t.Fatal(err)
		}
	}
	pl.mu.Unlock()
	timeouts := 0
	for range n {
		if err := <-results; err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				timeouts++
				continue
			}
			t.Error(err)
		}
	}
	if timeouts > 0 {
		t.Fatalf("%d of %d reads never saw their byte", timeouts, n)
	}
}

// A connection the poller cannot take (here: one already registered,
// which epoll refuses) is returned unwrapped, and the poller goes on
// serving the others.
func TestWrapFailureLeavesThePollerWorking(t *testing.T) {
	raw, peer := pair(t, func(c net.Conn) net.Conn { return c })
	first := Wrap(raw)
	defer first.Close()
	again := make(chan net.Conn, 1)
	go func() { again <- Wrap(raw) }()
	select {
	case got := <-again:
		if got != raw {
			t.Fatalf("wrapping a registered connection again = %T, want it unchanged", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wrap of a connection epoll refuses never returned")
	}
	// The first wrapping and new ones still work.
	c, s := pair(t, Wrap)
	for _, p := range [][2]net.Conn{{first, peer}, {c, s}} {
		p[0].SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := p[1].Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := p[0].Read(make([]byte, 1)); err != nil {
			t.Fatalf("Read after a failed Wrap: %v", err)
		}
	}
}
