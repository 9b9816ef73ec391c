package config

import (
	"crypto/sha256"
	"os"
	"slices"
)

// FilesSum identifies the content of the files t names (ca_file,
// cert_file, key_file) as they are now: a file rewritten, or a symlink
// on its path swapped to another file, changes it, and so does a file
// that cannot be read (its error goes into the sum). Zero when TLS is off
// or names no file. A certificate rotated in place keeps its path, so the
// proxy keys what it builds from these files by this sum, not by the
// paths alone.
func (t TLS) FilesSum() [sha256.Size]byte {
	var sum [sha256.Size]byte
	if !t.Enabled || t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		return sum
	}
	h := sha256.New()
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		// Per file: whether it is named and read, then the hash of its
		// bytes (or of its read error).
		tag, b := byte(0), []byte(nil)
		if p != "" {
			var err error
			if b, err = os.ReadFile(p); err != nil {
				tag, b = 1, []byte(err.Error())
			} else {
				tag = 2
			}
		}
		fs := sha256.Sum256(b)
		h.Write([]byte{tag})
		h.Write(fs[:])
	}
	h.Sum(sum[:0])
	return sum
}

// TLSFilesDigest combines the FilesSum of every cluster, in the order of
// their names: it changes when any file a cluster's tls names changes.
func (c *Config) TLSFilesDigest() [sha256.Size]byte {
	names := make([]string, 0, len(c.Clusters))
	for name, cc := range c.Clusters {
		if cc.TLS.Enabled {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	h := sha256.New()
	for _, name := range names {
		s := c.Clusters[name].TLS.FilesSum()
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(s[:])
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
