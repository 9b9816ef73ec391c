package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/examples"
	"github.com/outrigger-mesh/outrigger/examples/catalog"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// cmdDemo runs the example catalog app in this process on a free loopback
// port, writes the embedded example sidecar configuration (pointed at it) to
// a temporary directory, and runs the sidecar with it until SIGINT or
// SIGTERM. The configuration file stays live: editing it reloads the sidecar.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "outrigger demo [flags]", stderr)
	addrFile := fs.String("addr-file", "", "once listening, write the bound addresses as JSON to `PATH` (as run does)")
	ephemeral := fs.Bool("ephemeral-ports", false, "listen on free loopback ports instead of 15000, 15001, 15002 and 15006")
	level := fs.String("log-level", "", "override logging.level: debug, info, warn or error")
	format := fs.String("log-format", "", "override logging.format: json or console")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkLogFlags(stderr, *level, *format); err != nil {
		return err
	}

	// The app first: the sidecar's inbound listener forwards to it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("catalog app: %w", err)
	}
	app := catalog.New("catalog-1")
	appSrv := app.Server()
	appDone := make(chan error, 1)
	go func() { appDone <- appSrv.Serve(ln) }()
	// Shutdown order: the sidecar drains first (runWithSignals returns),
	// then the app stops, so requests the sidecar drains can still reach it.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		appSrv.Shutdown(ctx)
		app.Stop()
		if err := <-appDone; !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "outrigger demo: catalog app: %v\n", err)
		}
	}()

	dir, err := os.MkdirTemp("", "outrigger-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "outrigger.yaml")
	appAddr := ln.Addr().String()
	cfgText := strings.ReplaceAll(examples.SidecarConfig, examples.CatalogAddr, appAddr)
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		return err
	}

	o := sidecarOptions{
		configPath: path,
		logLevel:   *level,
		logFormat:  *format,
		addrFile:   *addrFile,
		stdout:     stdout,
		stderr:     stderr,
		onReady: func(a boundAddrs) {
			printDemoBanner(stderr, appAddr, path, a)
		},
	}
	// The event log keeps its files in the demo's directory, removed on exit.
	dataDir := filepath.Join(dir, "eventlog")
	o.override = func(c *config.Config) {
		c.EventLog.DataDir = dataDir
		if *ephemeral {
			c.Admin.Address = "127.0.0.1:0"
			c.Listeners.Outbound.Address = "127.0.0.1:0"
			c.Listeners.Inbound.Address = "127.0.0.1:0"
			c.Listeners.AppAPI.Address = "127.0.0.1:0"
		}
	}
	return runWithSignals(o, dir)
}

func printDemoBanner(w io.Writer, appAddr, cfgPath string, a boundAddrs) {
	fmt.Fprintf(w, `
Outrigger demo is running. The catalog app listens on %[1]s; the sidecar is in front of it.

  Outbound (how the app calls other services; Host picks the cluster):
    curl -H 'Host: catalog' http://%[2]s/items
    curl -H 'Host: catalog' http://%[2]s/items/2
    curl -H 'Host: catalog' http://%[2]s/headers
    curl -i -H 'Host: catalog' http://%[2]s/status/503     (retried, then 503)
    curl -i http://%[2]s/items                              (no route: 404, x-outrigger-error)

  Inbound (traffic for the app, through its sidecar):
    curl -i http://%[3]s/items

  Messaging (the app API: publish, then read the partition the answer names):
    curl -X POST http://%[6]s/v1/topics/orders/records -d '{"key":"order-1","value":{"item":"2","qty":1}}'
    curl 'http://%[6]s/v1/topics/orders/partitions/1/records?offset=0'    (key order-1 hashes to partition 1)
    curl http://%[4]s/topics

  Admin:
    curl http://%[4]s/ready
    curl http://%[4]s/config
    curl http://%[4]s/clusters
    curl -X POST 'http://%[4]s/clusters/catalog/breaker?state=open'    (outbound calls now fail fast; state=reset undoes it)
    curl -s http://%[4]s/metrics | grep ^outrigger_
    http://%[4]s/debug/pprof/

  Configuration (edit it and save: the sidecar reloads it, or refuses it and says why):
    %[5]s

Ctrl-C drains and stops.

`, appAddr, a.Outbound, a.Inbound, a.Admin, cfgPath, a.AppAPI)
}
