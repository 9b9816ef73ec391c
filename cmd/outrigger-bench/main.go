// Command outrigger-bench is the load-test kit of `make bench` when the peer
// benchmark (nginx, HAProxy, httputil beside Outrigger) is not available: an
// origin server, an open-loop load generator and a percentile calculator,
// driven by .ci/bench.sh.
//
//	outrigger-bench upstream -addr 127.0.0.1:18180
//	    HTTP/1.1 and h2c on one port: GET /hello (64 bytes), POST
//	    /bench.Echo/Echo (gRPC unary echo of any message, grpc-status 0)
//	outrigger-bench openloop -url URL -rate 1000 -d 10s [-conns 32] [-h2c]
//	    sends GETs at a fixed rate whatever the latency (no coordinated
//	    omission: latency counts from each request's scheduled time)
//	outrigger-bench pct FILE
//	    percentiles of an h2load --log-file (third column, microseconds)
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: outrigger-bench upstream|openloop|pct [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "upstream":
		err = upstream(os.Args[2:])
	case "openloop":
		err = openloop(os.Args[2:])
	case "pct":
		err = pct(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "outrigger-bench:", err)
		os.Exit(1)
	}
}

func upstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18180", "listen address")
	fs.Parse(args)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: *addr, Handler: upstreamHandler(), Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "upstream on %s (HTTP/1.1 + h2c)\n", *addr)
	return srv.ListenAndServe()
}

// upstreamHandler serves GET /hello (64 bytes) and the gRPC unary echo
// POST /bench.Echo/Echo.
func upstreamHandler() http.Handler {
	hello := []byte(strings.Repeat("x", 64))
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "64")
		w.Write(hello)
	})
	mux.HandleFunc("/bench.Echo/Echo", func(w http.ResponseWriter, r *http.Request) {
		msg, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(http.StatusOK)
		// A gRPC message is a 5-byte prefix (compressed flag, big-endian
		// length) and the message; echo it whole when it is well formed.
		if err != nil || len(msg) < 5 || int(binary.BigEndian.Uint32(msg[1:5])) != len(msg)-5 {
			w.Header().Set("Grpc-Status", "13")
			w.Header().Set("Grpc-Message", "malformed message")
			return
		}
		w.Write(msg)
		w.Header().Set("Grpc-Status", "0")
	})
	return mux
}

func openloop(args []string) error {
	fs := flag.NewFlagSet("openloop", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET")
	rate := fs.Int("rate", 1000, "requests per second")
	dur := fs.Duration("d", 10*time.Second, "how long to send")
	conns := fs.Int("conns", 32, "connections (HTTP/1.1) or concurrent senders (h2c)")
	useH2C := fs.Bool("h2c", false, "HTTP/2 cleartext with prior knowledge")
	fs.Parse(args)
	if *url == "" || *rate <= 0 || *dur <= 0 {
		return errors.New("openloop: -url, a positive -rate and -d are required")
	}
	var rt http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	if *useH2C {
		rt = &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}
	}
	client := &http.Client{Transport: rt, Timeout: 10 * time.Second}

	total := int(float64(*rate) * dur.Seconds())
	interval := time.Second / time.Duration(*rate)
	lat := make([]time.Duration, 0, total)
	var mu sync.Mutex
	var errs, late int
	// A fixed pool of senders takes scheduled slots from a channel; when
	// all are busy, slots queue and their wait counts as latency.
	slots := make(chan time.Time, total)
	var wg sync.WaitGroup
	senders := max(*conns*4, 64)
	for range senders {
		wg.Go(func() {
			for sched := range slots {
				resp, err := client.Get(*url)
				ok := err == nil && resp.StatusCode == 200
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(sched)
				mu.Lock()
				if ok {
					lat = append(lat, d)
				} else {
					errs++
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := range total {
		sched := start.Add(time.Duration(i) * interval)
		if w := time.Until(sched); w > 0 {
			time.Sleep(w)
		} else if w < -time.Millisecond {
			late++
		}
		slots <- sched
	}
	close(slots)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("requests: %d errors: %d late_sends: %d\n", len(lat)+errs, errs, late)
	fmt.Printf("achieved: %.1f req/s\n", float64(len(lat))/elapsed.Seconds())
	fmt.Printf("latency_ms: p50 %.3f p90 %.3f p99 %.3f p999 %.3f max %.3f\n", q(.5), q(.9), q(.99), q(.999), q(1))
	return nil
}

// pct prints "n p50 p90 p99 p999 max" (ms) of an h2load --log-file, whose
// lines are "start_us<TAB>status<TAB>duration_us".
func pct(args []string) error {
	if len(args) != 1 {
		return errors.New("pct FILE")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	line, err := percentiles(f)
	if err != nil {
		return err
	}
	fmt.Println(line)
	return nil
}

// percentiles reads h2load log lines and renders "n p50 p90 p99 p999 max"
// in milliseconds, or "0 - - - - -" when there is no sample.
func percentiles(r io.Reader) (string, error) {
	var d []float64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[2], 64); err == nil {
			d = append(d, v/1000)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if len(d) == 0 {
		return "0 - - - - -", nil
	}
	slices.Sort(d)
	q := func(p float64) float64 { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return fmt.Sprintf("%d %.3f %.3f %.3f %.3f %.3f", len(d), q(.5), q(.9), q(.99), q(.999), d[len(d)-1]), nil
}
