// Package proxytest holds what the tests of the proxy's clients
// (proxy/h1client, proxy/h2client) and servers (proxy/h1server,
// proxy/h2server) share: a loopback peer that runs a function on each
// connection it accepts (Serve), a listener of unbuffered pipes that
// stands for a client whose socket buffers are full (PipeListener), a
// clock tests move by hand (Clock), a server's error log kept for the
// test to read (Log), and connections whose Close stalls
// (StallingClose). Only tests import it.
//
// Serve's goroutines are the test's: its cleanup stops them and waits
// for them, so that goleak's check at the end of the package's tests
// finds none.
package proxytest
