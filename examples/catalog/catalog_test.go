package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves a catalog on a random loopback port until the test ends.
func start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := New("test-1")
	srv := app.Server()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		app.Stop()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestJSONRoutesOverHTTP1AndH2C(t *testing.T) {
	addr := start(t)
	h1 := &http.Transport{}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	for _, tr := range []*http.Transport{h1, h2} {
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/items/2")
		if err != nil {
			t.Fatal(err)
		}
		var it Item
		err = json.NewDecoder(resp.Body).Decode(&it)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || it.Name != "outrigger float" || resp.Header.Get("X-Served-By") != "test-1" {
			t.Fatalf("%s: %d %+v %v", resp.Proto, resp.StatusCode, it, err)
		}
		if tr == h2 && resp.ProtoMajor != 2 {
			t.Fatalf("h2c transport got %s", resp.Proto)
		}
	}
}

func TestAddThenListAndConflicts(t *testing.T) {
	addr := start(t)
	post := func(body string) int {
		resp, err := http.Post("http://"+addr+"/items", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(`{"id":"9","name":"bilge pump","price_cents":1500,"stock":2}`); c != 201 {
		t.Fatalf("add: %d", c)
	}
	if c := post(`{"id":"9","name":"again"}`); c != 409 {
		t.Fatalf("duplicate: %d", c)
	}
	if c := post(`{"id":"10"}`); c != 400 {
		t.Fatalf("missing name: %d", c)
	}
	if c := post(`{"id":"11","name":"x","colour":"red"}`); c != 400 {
		t.Fatalf("unknown field: %d", c)
	}
	resp, err := http.Get("http://" + addr + "/items")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Items []Item }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Items) != 4 || got.Items[3].ID != "9" {
		t.Fatalf("list: %+v %v", got, err)
	}
}

func TestStatusSlowAndHeaders(t *testing.T) {
	addr := start(t)
	for path, want := range map[string]int{
		"/status/503": 503, "/status/42": 400, "/slow?d=20ms": 200, "/slow?d=1h": 400, "/items/404": 404,
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/headers", nil)
	req.Header.Set("X-Outrigger-Test", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h["x-outrigger-test"] != "yes" {
		t.Fatalf("headers: %v %v", h, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestGRPCHealthOnTheSamePort(t *testing.T) {
	addr := start(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "catalog"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
}
