package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dir is where named segments live.
const Dir = "/dev/shm"

// PageSize is the system page size.
var PageSize = os.Getpagesize()

// ErrNotFound reports that a named segment does not exist.
var ErrNotFound = errors.New("shm: segment not found")

// Segment is a shared-memory file: a named file in /dev/shm or a memfd.
// It owns its descriptor; mappings made with Map outlive Close of the
// descriptor and are released with Unmap.
type Segment struct {
	name  string // "" for an anonymous segment
	fd    int
	size  int64
	owner bool // created here: Unlink on Destroy
}

// Create makes a new named segment of size bytes, zero-filled. It fails if
// the name exists. The caller owns the segment: Destroy unlinks it.
func Create(name string, size int64) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("shm: create %s: size %d must be positive", name, size)
	}
	fd, err := unix.Open(filepath.Join(Dir, name), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shm: create %s: %w", name, err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		unix.Unlink(filepath.Join(Dir, name))
		return nil, fmt.Errorf("shm: create %s: size %d: %w", name, size, err)
	}
	return &Segment{name: name, fd: fd, size: size, owner: true}, nil
}

// CreateAnon makes an anonymous segment (a memfd) of size bytes. It has no
// name in /dev/shm: other processes reach it only through its descriptor
// (SendFDs, or exec.Cmd.ExtraFiles), and it disappears with the last
// descriptor and mapping, so it can never leak.
func CreateAnon(label string, size int64) (*Segment, error) {
	if size <= 0 {
		return nil, fmt.Errorf("shm: create anonymous %s: size %d must be positive", label, size)
	}
	fd, err := unix.MemfdCreate("goray."+label, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create %s: %w", label, err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: memfd %s: size %d: %w", label, size, err)
	}
	return &Segment{fd: fd, size: size}, nil
}

// Open opens an existing named segment for reading and writing.
func Open(name string) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Open(filepath.Join(Dir, name), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: %s (was it created, or already removed by its owner?)", ErrNotFound, name)
		}
		return nil, fmt.Errorf("shm: open %s: %w", name, err)
	}
	return fromFD(name, fd)
}

// OpenFD adopts a duplicate of fd, a descriptor of a segment received from
// another process. The caller keeps fd.
func OpenFD(fd int) (*Segment, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: dup descriptor %d: %w", fd, err)
	}
	return fromFD("", nfd)
}

func fromFD(name string, fd int) (*Segment, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: stat %s: %w", name, err)
	}
	return &Segment{name: name, fd: fd, size: st.Size}, nil
}

// Name is the segment's name in /dev/shm, "" for an anonymous one.
func (s *Segment) Name() string { return s.name }

// FD is the segment's descriptor, valid until Close.
func (s *Segment) FD() int { return s.fd }

// Size is the segment's size in bytes.
func (s *Segment) Size() int64 { return s.size }

// Map maps length bytes at offset off (a multiple of PageSize). With
// writable false the mapping is read-only: a write through it faults.
func (s *Segment) Map(off, length int64, writable bool) ([]byte, error) {
	if off < 0 || length <= 0 || off+length > s.size || off%int64(PageSize) != 0 {
		return nil, fmt.Errorf("shm: map %s: window [%d, %d) outside segment of %d bytes or unaligned", s.label(), off, off+length, s.size)
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	b, err := unix.Mmap(s.fd, off, int(length), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap %s: %w", s.label(), err)
	}
	return b, nil
}

// Unmap releases a mapping made by Map.
func Unmap(b []byte) error {
	if b == nil {
		return nil
	}
	return unix.Munmap(b)
}

// Close closes the descriptor. Mappings stay valid.
func (s *Segment) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Destroy closes the descriptor and, if this process created the segment,
// unlinks its name.
func (s *Segment) Destroy() error {
	err := s.Close()
	if s.owner && s.name != "" {
		if uerr := Unlink(s.name); uerr != nil && err == nil {
			err = uerr
		}
		s.owner = false
	}
	return err
}

func (s *Segment) label() string {
	if s.name == "" {
		return "anonymous segment"
	}
	return s.name
}

// Unlink removes a named segment. A segment already gone is not an error.
func Unlink(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlink(filepath.Join(Dir, name)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("shm: unlink %s: %w", name, err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || len(name) > 240 || filepath.Base(name) != name || name[0] == '.' {
		return fmt.Errorf("shm: bad segment name %q: want a plain file name of 1 to 240 bytes", name)
	}
	return nil
}

// Allocate reserves the segment's memory now (fallocate), so that running
// out of /dev/shm is an error here rather than a SIGBUS at the first write
// through a mapping.
func (s *Segment) Allocate() error {
	if err := unix.Fallocate(s.fd, 0, 0, s.size); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("shm: %s: %d bytes: no space left in %s (enlarge it, or free memory): %w", s.label(), s.size, Dir, err)
		}
		return fmt.Errorf("shm: allocate %s: %w", s.label(), err)
	}
	return nil
}

// Free is the space left in Dir, the tmpfs that named segments live in:
// a named segment larger than this can be created and mapped, but a write
// to its pages beyond it faults (SIGBUS) rather than failing.
func Free() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(Dir, &st); err != nil {
		return 0, fmt.Errorf("shm: statfs %s: %w", Dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
