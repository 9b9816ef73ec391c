package h2client

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A request above a GOAWAY's last stream id whose body was streaming
// (no GetBody) is not sent again by the Transport, but its error says
// the server did not process it, so that the caller may; a processed one
// says nothing of the kind.
func TestUnsentAgainUnprocessedRequestWrapsErrUnprocessed(t *testing.T) {
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		if h.PseudoValue("path") == "/processed" {
			rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeInternal)
		} else {
			rc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}
		rc.readUntil(func(http2.Frame) bool { return false })
	})
	tr := newTransport(t)
	for _, c := range []struct {
		path        string
		unprocessed bool
	}{{"/unprocessed", true}, {"/processed", false}} {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+c.path, pr)
		_, err := tr.RoundTrip(req)
		if err == nil {
			t.Fatalf("%s: no error", c.path)
		}
		if errors.Is(err, ErrUnprocessed) != c.unprocessed {
			t.Errorf("%s: %v: errors.Is(err, ErrUnprocessed) = %v, want %v", c.path, err, !c.unprocessed, c.unprocessed)
		}
	}
}
