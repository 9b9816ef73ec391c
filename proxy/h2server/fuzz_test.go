package h2server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fuzzSeed frames a few things a client says: requests with and without
// bodies and trailers, resets, window updates, settings, pings.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	frame := func(f func(fr *http2.Framer, block func(kv ...string) []byte)) []byte {
		var out, hb bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		enc := hpack.NewEncoder(&hb)
		block := func(kv ...string) []byte {
			hb.Reset()
			for i := 0; i < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		}
		f(fr, block)
		return out.Bytes()
	}
	req := []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/"}
	seeds = append(seeds, frame(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(req...), EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("x-t", "v"), EndHeaders: true, EndStream: true})
	}))
	seeds = append(seeds, frame(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(append(req, "content-length", "3", "trailer", "x-t")...), EndHeaders: true})
		fr.WriteDataPadded(1, true, []byte("abc"), []byte{0, 0})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(req...)[:4]})
		fr.WriteContinuation(3, true, block(req...)[4:])
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
	}))
	seeds = append(seeds, frame(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/big"), EndHeaders: true, EndStream: true})
		fr.WriteWindowUpdate(1, 100)
		fr.WriteWindowUpdate(0, 100)
		fr.WritePing(false, [8]byte{1})
		fr.WritePriority(1, http2.PriorityParam{StreamDep: 3})
		fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	}))
	seeds = append(seeds, frame(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: block(req...), EndHeaders: true})
	}))
	return seeds
}

// FuzzServeConn feeds arbitrary frames after the preface and the first
// SETTINGS: the server must neither panic nor hang (ServeConn returns
// once the input ends, its handlers with it).
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Echo")
		w.WriteHeader(200)
		io.Copy(w, r.Body)
		if r.URL.Path == "/big" {
			w.Write(make([]byte, 70000))
		}
		w.Header().Set("X-Echo", r.Trailer.Get("X-T"))
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		srv := &Server{Handler: h, MaxConcurrentStreams: 8, MaxHeaderBytes: 4 << 10}
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(a, nil)
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, b)
		}()
		var in bytes.Buffer
		in.WriteString(http2.ClientPreface)
		http2.NewFramer(&in, nil).WriteSettings()
		in.Write(data)
		b.SetWriteDeadline(time.Now().Add(5 * time.Second))
		b.Write(in.Bytes()) // fails early if the server hung up
		b.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return after its input ended")
		}
		<-drained
	})
}
