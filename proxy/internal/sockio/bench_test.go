package sockio

import (
	"io"
	"testing"
)

// BenchmarkPingPong measures one small request and one small response
// over loopback, the shape of a proxied request's socket calls, with both
// ends plain and both ends wrapped.
func BenchmarkPingPong(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			c, s := pair(b, k.wrap)
			done := make(chan error, 1)
			go func() {
				// Echo until the client closes.
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(s, buf); err != nil {
						done <- nil
						return
					}
					if _, err := s.Write(buf); err != nil {
						done <- err
						return
					}
				}
			}()
			req, resp := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWriteRead measures the socket calls alone: one goroutine
// writes 64 bytes on one end and reads them on the other, which on
// loopback are there by the time write returns, so neither call waits on
// the poller and no other goroutine is woken.
func BenchmarkWriteRead(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			c, s := pair(b, k.wrap)
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
