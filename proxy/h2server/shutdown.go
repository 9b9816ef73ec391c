package h2server

import (
	"time"

	"golang.org/x/net/http2"
)

// Shutdown closes a connection in two steps, as RFC 9113 §6.8 advises
// and as Envoy and grpc-go's server do (nghttp2 provides the notice). A
// single GOAWAY naming the last stream the server has seen races with
// the client: a request it sends before the GOAWAY reaches it arrives
// above that id and is refused, and the client has to send it again
// elsewhere. So the server first
// sends a notice, GOAWAY(NO_ERROR) naming maxStreamID, which stops the
// client opening streams but refuses none, followed by a PING. The
// client answers the PING after it has read the notice, so every stream
// it opened before then arrives ahead of the acknowledgement; on it the
// server sends the final GOAWAY, naming the last stream the client
// opened, and from then on refuses new ones. A client that does not
// acknowledge the PING gets the final GOAWAY after noticeWait.
//
// The idle timeout and a client's own GOAWAY close in one step (see
// startGoAway): an idle connection has no stream to lose, and one
// racing with the GOAWAY is refused with REFUSED_STREAM, which the
// client may send again; a client that sent GOAWAY is leaving anyway.
// Connection errors send one GOAWAY with their code, naming no more
// than a GOAWAY before them.

// maxStreamID is the highest stream id (RFC 9113 §5.1.1), which the
// shutdown notice names.
const maxStreamID = 1<<31 - 1

// noticeWait bounds the wait for the acknowledgement of the notice's
// PING, for a client that does not answer. One round trip is what the
// notice needs, and a second is many round trips on the networks a
// sidecar sees; it also bounds what such a client adds to a drain.
// grpc-go's server waits up to a minute for its PING's acknowledgement;
// Envoy sends no PING and waits its drain_timeout (5 s by default).
const noticeWait = time.Second

// noticePing is the opaque data of the notice's PING; an
// acknowledgement with other data (of a PING a handler cannot send, or
// a confused client) is ignored.
var noticePing = [8]byte{'s', 'h', 'u', 't', 'd', 'o', 'w', 'n'}

func (s *Server) noticeDelay() time.Duration {
	if s.noticeWait > 0 {
		return s.noticeWait
	}
	return noticeWait
}

// startShutdown sends the shutdown notice and its PING, and arms the
// timer that sends the final GOAWAY if no acknowledgement comes. A
// connection that already sent a GOAWAY (a notice, an idle close, or an
// answer to the client's) is left to it.
func (sc *serverConn) startShutdown() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.dead || sc.goAwaySent {
		return
	}
	sc.goAwaySent = true
	sc.goAwayLast = maxStreamID
	sc.noticePending = true
	sc.appendGoAwayLocked(maxStreamID, http2.ErrCodeNo)
	sc.appendPingLocked(noticePing)
	sc.queueLocked()
	sc.noticeTimer = time.AfterFunc(sc.srv.noticeDelay(), sc.sendFinalGoAway)
}

// sendFinalGoAway sends the final GOAWAY, naming the last stream the
// client opened, if the notice is still pending. It runs on the reader
// when the client acknowledges the notice's PING (the streams it opened
// before it read the notice have all arrived), and on noticeTimer's
// goroutine when no acknowledgement came in time; whichever comes second
// finds the notice no longer pending.
func (sc *serverConn) sendFinalGoAway() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.noticePending {
		sc.startGoAwayLocked()
	}
}

// endNoticeLocked marks the notice answered, by the final GOAWAY or one
// for a connection error about to be appended.
func (sc *serverConn) endNoticeLocked() {
	sc.noticePending = false
	if sc.noticeTimer != nil {
		sc.noticeTimer.Stop()
	}
}
