package config

import (
	"os"
	"path/filepath"
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
