package h2server

import (
	"net/http"
	"strings"
	"testing"
)

// A request stream the server ends itself before any handler runs (a
// malformed request reset PROTOCOL_ERROR, RFC 9113 §8.1.1; a header list
// over the limit answered 431) is reported to Refused once, after the
// answer is queued and without sc.mu held, with what was read of its
// pseudo-header fields. A stream the handler serves is not reported, nor
// one refused for the stream limit or after GOAWAY (REFUSED_STREAM: the
// client may send it again).
func TestRefusedStreamsAreReportedWithWhatWasRead(t *testing.T) {
	refused := make(chan Refusal, 8)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
	}), func(s *Server) {
		s.MaxHeaderBytes = 1024
		s.Refused = func(r Refusal) { refused <- r }
	})
	rc := dialRaw(t, ts.addr)
	big := strings.Repeat("a", 600) // two are over the limit, one is not
	for _, tc := range []struct {
		name string
		send func()
		want Refusal
	}{
		{"connection-specific field", func() { rc.get(1, "/a/b?q=1", "connection", "keep-alive") },
			Refusal{Method: "GET", Host: "x", Path: "/a/b", Status: 0, Detail: "malformed request"}},
		{"uppercase field name", func() { rc.get(3, "/up", "X-Upper", "1") },
			Refusal{Status: 0, Detail: "invalid header field name"}},
		{"value with a leading space", func() { rc.get(5, "/sp", "x-a", " 1") },
			Refusal{Status: 0, Detail: "header field value starts or ends with whitespace"}},
		{"header list too large", func() { rc.get(7, "/big", "x-a", big, "x-b", big) },
			Refusal{Method: "GET", Host: "x", Path: "/big", Status: 431, Detail: "request header list too large"}},
		// Decoded, as a served request's URL.Path and an HTTP/1.1
		// refusal's Path are.
		{"escaped path", func() { rc.get(9, "/a%20b/%2Fc?q=%20", "connection", "keep-alive") },
			Refusal{Method: "GET", Host: "x", Path: "/a b//c", Status: 0, Detail: "malformed request"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			got := within(t, "the refusal", refused)
			if got.RemoteAddr != rc.nc.LocalAddr().String() || got.Proto != "HTTP/2.0" {
				t.Errorf("RemoteAddr %q, Proto %q; want the client's %q and HTTP/2.0", got.RemoteAddr, got.Proto, rc.nc.LocalAddr())
			}
			got.RemoteAddr, got.Proto = "", ""
			if got != tc.want {
				t.Errorf("reported %+v\nwant       %+v", got, tc.want)
			}
		})
	}
	// A served stream is no refusal.
	rc.get(11, "/served")
	if status, _, _, _ := rc.response(11); status != "400" {
		t.Fatalf("served stream: %s", status)
	}
	select {
	case r := <-refused:
		t.Fatalf("reported %+v", r)
	default:
	}
}
