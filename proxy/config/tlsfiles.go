package config

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
)

// MaxTLSFileBytes bounds a file a cluster's tls names (ca_file,
// cert_file, key_file), or a listener's: the largest CA bundles are a few hundred KB.
const MaxTLSFileBytes = 4 << 20

// ReadTLSFile reads a file a cluster's or a listener's tls names: a regular file (or a
// symlink to one) of at most MaxTLSFileBytes. Anything else is an error
// that says what it is: a FIFO or a device, whose read could wait for
// good (and hold the reload, or the check of the files every 2 s, and
// with it the stop), a directory, a larger file. It is opened without
// blocking, so that a FIFO is found out rather than waited on.
func ReadTLSFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	tooLarge := fmt.Errorf("%s: larger than %d bytes", path, MaxTLSFileBytes)
	if fi.Size() > MaxTLSFileBytes {
		return nil, tooLarge
	}
	// Sized by the file, as os.ReadFile does: one allocation, not the
	// doublings of a growing buffer. A file that grows meanwhile is read
	// on, to the bound.
	b := make([]byte, 0, fi.Size()+512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > MaxTLSFileBytes {
			return nil, tooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// FilesSum identifies the content of the files t names (ca_file,
// cert_file, key_file) as they are now: a file rewritten, or a symlink
// on its path swapped to another file, changes it, and so does a file
// that cannot be read (its error goes into the sum). Zero when TLS is off
// or names no file. A certificate rotated in place keeps its path, so the
// proxy keys what it builds from these files by this sum, not by the
// paths alone.
func (t TLS) FilesSum() [sha256.Size]byte { return t.filesSum(nil) }

// filesSum is FilesSum, taking the sums of files read already from seen
// and adding those it reads (seen may be nil).
func (t TLS) filesSum(seen map[string][sha256.Size]byte) [sha256.Size]byte {
	var sum [sha256.Size]byte
	if !t.NamesFiles() {
		return sum
	}
	h := sha256.New()
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		fs := fileSum(p, seen)
		h.Write(fs[:])
	}
	h.Sum(sum[:0])
	return sum
}

// NamesFiles reports whether t is enabled and names a file (ca_file,
// cert_file or key_file).
func (t TLS) NamesFiles() bool {
	return t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "")
}

// NamesTLSFiles reports whether a cluster's or a listener's tls names a
// file.
func (c *Config) NamesTLSFiles() bool {
	for _, cc := range c.Clusters {
		if cc.TLS.NamesFiles() {
			return true
		}
	}
	return c.Listeners.Outbound.TLS.NamesFiles() || c.Listeners.Inbound.TLS.NamesFiles()
}

// filesSum is as TLS's, for the files a listener's tls names
// (cert_file, key_file, client_ca_file).
func (t ListenerTLS) filesSum(seen map[string][sha256.Size]byte) [sha256.Size]byte {
	var sum [sha256.Size]byte
	if !t.NamesFiles() {
		return sum
	}
	h := sha256.New()
	for _, p := range []string{t.CertFile, t.KeyFile, t.ClientCAFile} {
		fs := fileSum(p, seen)
		h.Write(fs[:])
	}
	h.Sum(sum[:0])
	return sum
}

// fileSum identifies what path holds now: its bytes, or the error that
// stopped its read (a tag tells the two apart); zero for no path. A path
// in seen is not read again; one read is added to seen when it is not nil.
func fileSum(path string, seen map[string][sha256.Size]byte) [sha256.Size]byte {
	var sum [sha256.Size]byte
	if path == "" {
		return sum
	}
	if s, ok := seen[path]; ok {
		return s
	}
	h := sha256.New()
	if b, err := ReadTLSFile(path); err != nil {
		h.Write([]byte{1})
		h.Write([]byte(err.Error()))
	} else {
		h.Write([]byte{2})
		h.Write(b)
	}
	h.Sum(sum[:0])
	if seen != nil {
		seen[path] = sum
	}
	return sum
}

// TLSFilesDigest combines the FilesSum of every cluster, in the order of
// their names, and the sums of the listeners' tls files: it changes when
// any file a cluster's or a listener's tls names changes. Each file is
// read once, however many clusters and listeners name it (they commonly
// share one certificate, key and CA bundle).
func (c *Config) TLSFilesDigest() [sha256.Size]byte {
	names := make([]string, 0, len(c.Clusters))
	for name, cc := range c.Clusters {
		if cc.TLS.Enabled {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	seen := map[string][sha256.Size]byte{}
	h := sha256.New()
	for _, name := range names {
		s := c.Clusters[name].TLS.filesSum(seen)
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(s[:])
	}
	// A "/" no cluster name has keeps these apart from the clusters'.
	for _, l := range []struct {
		name string
		tls  ListenerTLS
	}{{"/listeners.outbound", c.Listeners.Outbound.TLS}, {"/listeners.inbound", c.Listeners.Inbound.TLS}} {
		if !l.tls.Enabled {
			continue
		}
		s := l.tls.filesSum(seen)
		h.Write([]byte(l.name))
		h.Write([]byte{0})
		h.Write(s[:])
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
