package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentilesOfAnH2loadLog(t *testing.T) {
	var b strings.Builder
	for i := 1; i <= 1000; i++ {
		b.WriteString("1700000000000\t200\t")
		b.WriteString(strconv.Itoa(i * 1000)) // i ms
		b.WriteString("\n")
	}
	got, err := percentiles(strings.NewReader(b.String() + "garbage\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "1000 501.000 901.000 991.000 1000.000 1000.000"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, _ := percentiles(strings.NewReader("")); got != "0 - - - - -" {
		t.Fatalf("empty: %q", got)
	}
}

func TestUpstreamEchoesGRPCAndServesHello(t *testing.T) {
	srv := httptest.NewUnstartedServer(upstreamHandler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := srv.Client()

	resp, err := c.Get(srv.URL + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 64 {
		t.Fatalf("hello: %d, %d bytes", resp.StatusCode, len(body))
	}

	for _, tc := range []struct {
		msg    []byte
		status string
	}{
		{append([]byte{0, 0, 0, 0, 3}, "abc"...), "0"},
		{[]byte{0, 0, 0, 0, 9, 'x'}, "13"},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/bench.Echo/Echo", bytes.NewReader(tc.msg))
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Trailer.Get("Grpc-Status") != tc.status {
			t.Fatalf("grpc-status %q, want %q", resp.Trailer.Get("Grpc-Status"), tc.status)
		}
		if tc.status == "0" && !bytes.Equal(got, tc.msg) {
			t.Fatalf("echo %q, want %q", got, tc.msg)
		}
	}
}
