//go:build !amd64 && !arm64

package shm

func pause(n uint32) {
	for i := uint32(0); i < n; i++ {
	}
}
