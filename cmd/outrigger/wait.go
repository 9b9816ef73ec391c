package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// waitPoll is how often wait asks /ready.
const waitPoll = 100 * time.Millisecond

// cmdWait waits until the sidecar whose admin endpoint is at --admin
// answers /ready with 200, for at most --timeout: an app's container
// start (a Kubernetes postStart hook of the sidecar's container, a
// script) can hold its first outbound call until the sidecar serves.
func cmdWait(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("wait", "outrigger wait [--admin HOST:PORT] [--timeout D]", stderr)
	admin := fs.String("admin", config.DefaultAdminAddress, "the sidecar's admin `address`")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait at most")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "outrigger wait: --timeout must be positive, got %v\n", *timeout)
		return errUsage
	}
	if _, _, err := net.SplitHostPort(*admin); err != nil {
		fmt.Fprintf(stderr, "outrigger wait: --admin must be HOST:PORT, got %q\n", *admin)
		return errUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequest(http.MethodGet, "http://"+*admin+"/ready", nil)
	if err != nil {
		fmt.Fprintf(stderr, "outrigger wait: --admin %q: %v\n", *admin, err)
		return errUsage
	}
	last, err := waitReady(ctx, req)
	if err != nil {
		return fmt.Errorf("wait: the sidecar at %s was not ready within %v (last: %s)", *admin, *timeout, last)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

// waitReady sends req every waitPoll until it is answered 200 or ctx
// ends, and says what the last attempt got.
func waitReady(ctx context.Context, req *http.Request) (last string, err error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	req = req.WithContext(ctx)
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		resp, rerr := c.Do(req)
		if rerr == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "", nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else if ctx.Err() == nil {
			last = rerr.Error()
		}
		select {
		case <-ctx.Done():
			if last == "" {
				last = "no answer"
			}
			return last, errors.New("not ready")
		case <-t.C:
		}
	}
}
