package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
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
