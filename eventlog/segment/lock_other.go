//go:build !unix

package segment

import "os"

// lockDir opens dir/.lock; without flock the directory is not protected
// against a second writer on this platform.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(dir+"/.lock", os.O_CREATE|os.O_RDWR, 0o644)
}
