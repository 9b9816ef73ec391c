package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTLSFilesSumFollowsContent(t *testing.T) {
	dir := t.TempDir()
	ca, cert := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(ca, "ca one")
	write(cert, "cert one")
	tl := TLS{Enabled: true, CAFile: ca, CertFile: cert, KeyFile: cert}

	if (TLS{Enabled: true}).FilesSum() != [32]byte{} || (TLS{CAFile: ca}).FilesSum() != [32]byte{} {
		t.Fatal("a tls block without files (or turned off) has a non-zero sum")
	}
	first := tl.FilesSum()
	if first == [32]byte{} || tl.FilesSum() != first {
		t.Fatal("the sum of unchanged files is zero or not stable")
	}
	write(ca, "ca two")
	second := tl.FilesSum()
	if second == first {
		t.Fatal("rewriting ca_file in place did not change the sum")
	}
	// The same bytes moved from one file to another are a change too.
	swapped := TLS{Enabled: true, CAFile: cert, CertFile: ca, KeyFile: cert}
	if swapped.FilesSum() == second {
		t.Fatal("files swapped between keys have the same sum")
	}
	if err := os.Remove(ca); err != nil {
		t.Fatal(err)
	}
	if gone := tl.FilesSum(); gone == second || gone == [32]byte{} {
		t.Fatal("a file gone did not change the sum")
	}

	c := &Config{Clusters: map[string]Cluster{"a": {TLS: tl}, "b": {}}}
	d := c.TLSFilesDigest()
	write(ca, "ca three")
	if c.TLSFilesDigest() == d {
		t.Fatal("the config's digest missed a changed file")
	}
}

// A listener's tls files are watched as a cluster's are: the digest the
// sidecar compares every 2 s changes with each of them, and a config
// whose listener names files says so.
func TestTLSFilesDigestFollowsListenerFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &Config{}
	if c.NamesTLSFiles() {
		t.Fatal("a config without tls names files")
	}
	plain := c.TLSFilesDigest()
	c.Listeners.Inbound.TLS = ListenerTLS{Enabled: true, CertFile: cert, KeyFile: key, ClientCAFile: ca}
	if !c.NamesTLSFiles() {
		t.Fatal("the inbound listener's tls files are not named")
	}
	d := c.TLSFilesDigest()
	if d == plain {
		t.Fatal("the digest left the inbound listener's files out")
	}
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte(p+" rotated"), 0o600); err != nil {
			t.Fatal(err)
		}
		n := c.TLSFilesDigest()
		if n == d {
			t.Fatalf("the digest missed a change of %s", filepath.Base(p))
		}
		d = n
	}
	// The same files on the other listener are another configuration.
	c.Listeners.Outbound.TLS, c.Listeners.Inbound.TLS = c.Listeners.Inbound.TLS, ListenerTLS{}
	if c.TLSFilesDigest() == d {
		t.Fatal("the outbound listener's files sum as the inbound one's")
	}
}

// Clusters commonly share one certificate, key and CA bundle. The digest,
// taken every tick of the sidecar's watch, reads each file once however
// many clusters name it; it read the files once per cluster, so 200
// clusters naming the system's CA bundle (about 220 KB) read and hashed
// some 45 MB every 2 s.
func TestTLSFilesDigestReadsASharedFileOnce(t *testing.T) {
	dir := t.TempDir()
	ca, cert := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem")
	const size = 1 << 20
	if err := os.WriteFile(ca, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, []byte("cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	const clusters = 64
	c := &Config{Clusters: map[string]Cluster{}}
	for i := range clusters {
		c.Clusters[fmt.Sprintf("c%d", i)] = Cluster{TLS: TLS{Enabled: true, CAFile: ca, CertFile: cert, KeyFile: cert}}
	}
	want := c.TLSFilesDigest()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := c.TLSFilesDigest()
	runtime.ReadMemStats(&after)
	if got != want {
		t.Fatal("the digest of unchanged files changed")
	}
	// The shared file once, and a little for the rest; once per cluster
	// would be 64 MiB.
	if n := after.TotalAlloc - before.TotalAlloc; n > 4*size {
		t.Fatalf("the digest of %d clusters sharing a %d-byte file allocated %d bytes: the file was read more than once", clusters, size, n)
	}

	// Each cluster still follows its own files.
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, []byte("other ca"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Clusters["c7"] = Cluster{TLS: TLS{Enabled: true, CAFile: other, CertFile: cert, KeyFile: cert}}
	moved := c.TLSFilesDigest()
	if moved == want {
		t.Fatal("a cluster moved to another CA file left the digest as it was")
	}
	if err := os.WriteFile(other, []byte("other ca, rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.TLSFilesDigest() == moved {
		t.Fatal("a file only one cluster names was rewritten and the digest stayed")
	}
}

// A file a cluster's tls names that is not a regular file, or is larger
// than MaxTLSFileBytes, is an error, found without waiting: a FIFO's
// read would wait for a writer for good, and with it the check of the
// files every 2 s (and the stop, which waits for that check).
func TestReadTLSFileRefusesWhatIsNotAPlainFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxTLSFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.pem")
	if err := os.WriteFile(ok, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, tc := range []struct{ path, want string }{
			{fifo, "not a regular file"},
			{dir, "not a regular file"},
			{big, "larger than"},
		} {
			if _, err := ReadTLSFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadTLSFile(%s): %v, want an error saying %q", tc.path, err, tc.want)
			}
		}
		if b, err := ReadTLSFile(ok); err != nil || string(b) != "pem" {
			t.Errorf("ReadTLSFile(a plain file): %q, %v", b, err)
		}
		tl := TLS{Enabled: true, CAFile: fifo}
		if tl.FilesSum() == (TLS{Enabled: true, CAFile: ok}).FilesSum() {
			t.Error("a FIFO's sum is a plain file's")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO waited")
	}
}
