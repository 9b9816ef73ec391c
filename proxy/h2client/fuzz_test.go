package h2client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverBytes encodes frames as a server would send them after its
// SETTINGS, for the fuzz corpus.
func serverBytes(write func(fr *http2.Framer, enc func(kv ...string) []byte)) []byte {
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	henc := hpack.NewEncoder(&hb)
	enc := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	write(fr, enc)
	return out.Bytes()
}

// FuzzServerFrames feeds arbitrary bytes from the server, after a valid
// SETTINGS frame, to a request in flight: the client must neither panic
// nor hang, and must leave no goroutine behind.
func FuzzServerFrames(f *testing.F) {
	f.Add(serverBytes(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200", "trailer", "x-t"), EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-t", "v"), EndHeaders: true, EndStream: true})
	}))
	f.Add(serverBytes(func(fr *http2.Framer, enc func(...string) []byte) {
		b := enc(":status", "103", "link", "x")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:2]})
		fr.WriteContinuation(1, true, b[2:])
		fr.WriteWindowUpdate(0, 1000)
		fr.WritePing(false, [8]byte{1})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200", "content-length", "2"), EndHeaders: true})
		fr.WriteDataPadded(1, true, []byte("ok"), []byte{0, 0, 0})
	}))
	f.Add(serverBytes(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
		fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
		fr.WriteGoAway(0, http2.ErrCodeNo, []byte("x"))
	}))
	f.Add(serverBytes(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteData(1, false, []byte("early"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(":status", "200"), EndHeaders: true})
		fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: enc(":method", "GET"), EndHeaders: true})
	}))
	f.Add([]byte{0, 0, 0, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-finished:
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				panic("hung:\n" + string(buf[:runtime.Stack(buf, true)]))
			}
		}()
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer srv.Close()
			br := bufio.NewReader(srv)
			preface := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(br, preface); err != nil {
				return
			}
			fr := http2.NewFramer(srv, br)
			if fr.WriteSettings() != nil {
				return
			}
			go io.Copy(io.Discard, br) // the pipe is synchronous: keep the client's writes flowing
			srv.Write(data)
			time.Sleep(2 * time.Millisecond)
		}()
		tr := &Transport{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) { return cli, nil }}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fuzz.test:80/", nil)
		if resp, err := tr.RoundTrip(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
		tr.closeAllForTest()
		cli.Close()
		<-done
	})
}
