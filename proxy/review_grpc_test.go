package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A grpc-timeout of zero ("0m", or the "0n" grpc-go's encoder writes for
// a deadline already past) is a deadline that has passed, as grpc-go's
// server reads it: the call ends DEADLINE_EXCEEDED at once. It must not
// switch off the route timeout, which is what taking it as "no timeout"
// did: the call then waited on a hung upstream for as long as the client
// stayed.
func TestGRPCTimeoutZeroIsAnExpiredDeadlineNotNone(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Timeout = 20 * time.Second
	h := startProxy(t, cfg)
	for _, v := range []string{"0m", "0n", "00000000S"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", v)
		resp, err := h.h2c.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("grpc-timeout %s: %v (the call was not bounded)", v, err)
		}
		readAll(t, resp)
		cancel()
		if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || resp.Header.Get("X-Outrigger-Error") != "upstream_timeout" {
			t.Fatalf("grpc-timeout %s: %d %v", v, resp.StatusCode, resp.Header)
		}
	}
}
