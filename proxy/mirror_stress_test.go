package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Many requests with different bodies, sent at once over HTTP/1.1 and
// HTTP/2, on a route that retries (its body kept for replay): each copy
// reaches the mirror with its own request's body, byte for byte, whatever
// the buffers the primary's transport and the client's connection reuse
// once the primary is done.
func TestMirrorCopiesKeepTheirOwnBodiesUnderConcurrency(t *testing.T) {
	check := func(r *http.Request) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != r.Header.Get("X-Sum") {
			return fmt.Errorf("%s: body of %d bytes hashes to %s, sent as %s", r.Header.Get("X-Request-Id"), len(b), got[:8], r.Header.Get("X-Sum"))
		}
		return nil
	}
	var bad atomic.Int64
	var firstBad atomic.Value
	var mirroredOK atomic.Int64
	primary := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		if err := check(r); err != nil {
			bad.Add(1)
			firstBad.CompareAndSwap(nil, "primary: "+err.Error())
		}
		_, _ = w.Write(bytes.Repeat([]byte("p"), 4096))
	})
	shadow := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		if err := check(r); err != nil {
			bad.Add(1)
			firstBad.CompareAndSwap(nil, "mirror: "+err.Error())
		} else {
			mirroredOK.Add(1)
		}
	})
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			bad.Store(0)
			mirroredOK.Store(0)
			cfg := mirrorConfig(addr(primary), addr(shadow), nil, func(r *config.Route) {
				r.Retry = &config.RetryPolicy{Attempts: 1}
			})
			cfg.Clusters["svc"] = config.Cluster{Endpoints: eps(addr(primary)), Protocol: proto}
			cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(addr(shadow)), Protocol: proto}
			h := startProxy(t, cfg)
			const workers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					client := h.h1
					if w%2 == 1 {
						client = h.h2c
					}
					for range each {
						body := make([]byte, 1+rng.IntN(mirrorBodyCap-1))
						for i := range body {
							body[i] = byte(rng.Uint32())
						}
						sum := sha256.Sum256(body)
						req, _ := http.NewRequest("POST", h.url("/"), bytes.NewReader(body))
						req.Header.Set("X-Sum", hex.EncodeToString(sum[:]))
						resp, err := client.Do(req)
						if err != nil {
							errs <- err
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "every copy to be sent", func() bool {
				return h.mirrorCount(mirrorSent)+h.mirrorCount(mirrorFailed)+h.mirrorCount(mirrorDroppedBody) == workers*each
			})
			if n := bad.Load(); n != 0 {
				t.Fatalf("%d requests with a body not their own; first: %v", n, firstBad.Load())
			}
			if n := mirroredOK.Load(); n != workers*each {
				t.Fatalf("%d copies reached the mirror whole, want %d (sent %v, failed %v, dropped %v)", n, workers*each,
					h.mirrorCount(mirrorSent), h.mirrorCount(mirrorFailed), h.mirrorCount(mirrorDroppedBody))
			}
		})
	}
}
