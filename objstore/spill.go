package objstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/goray/goray/internal/ids"
)

// A spill file is one record: a header, then the object's bytes.
//
//	off  size  field
//	  0     4  magic "GRSP"
//	  4     2  version (1)
//	  6     2  reserved, zero
//	  8    28  object ID
//	 36     8  object size in bytes
//	 44     4  CRC-32C of the object's bytes
//	 48     4  CRC-32C of bytes 0..47
//	 52     …  the object's bytes
//
// Integers are little-endian. A record whose header or payload checksum
// fails, or whose length disagrees with its size, is ErrSpillCorrupt.
const (
	spillMagic      = "GRSP"
	spillVersion    = 1
	spillHeaderSize = 52
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type spillHeader struct {
	id   ids.ObjectID
	size int64
	crc  uint32
}

func (h spillHeader) encode() []byte {
	b := make([]byte, spillHeaderSize)
	copy(b, spillMagic)
	binary.LittleEndian.PutUint16(b[4:], spillVersion)
	copy(b[8:], h.id[:])
	binary.LittleEndian.PutUint64(b[36:], uint64(h.size))
	binary.LittleEndian.PutUint32(b[44:], h.crc)
	binary.LittleEndian.PutUint32(b[48:], crc32.Checksum(b[:48], castagnoli))
	return b
}

func decodeSpillHeader(b []byte) (spillHeader, error) {
	if len(b) < spillHeaderSize {
		return spillHeader{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrSpillCorrupt, len(b), spillHeaderSize)
	}
	if string(b[:4]) != spillMagic {
		return spillHeader{}, fmt.Errorf("%w: bad magic %q", ErrSpillCorrupt, b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != spillVersion {
		return spillHeader{}, fmt.Errorf("%w: version %d, want %d", ErrSpillCorrupt, v, spillVersion)
	}
	if got, want := binary.LittleEndian.Uint32(b[48:]), crc32.Checksum(b[:48], castagnoli); got != want {
		return spillHeader{}, fmt.Errorf("%w: header checksum %08x, want %08x", ErrSpillCorrupt, got, want)
	}
	if binary.LittleEndian.Uint16(b[6:]) != 0 {
		return spillHeader{}, fmt.Errorf("%w: reserved field set", ErrSpillCorrupt)
	}
	var h spillHeader
	copy(h.id[:], b[8:36])
	size := binary.LittleEndian.Uint64(b[36:])
	if size > 1<<62 {
		return spillHeader{}, fmt.Errorf("%w: size %d", ErrSpillCorrupt, size)
	}
	h.size = int64(size)
	h.crc = binary.LittleEndian.Uint32(b[44:])
	return h, nil
}

// EncodeSpillRecord is the spill record of object id with bytes data.
func EncodeSpillRecord(id ids.ObjectID, data []byte) []byte {
	h := spillHeader{id: id, size: int64(len(data)), crc: crc32.Checksum(data, castagnoli)}
	return append(h.encode(), data...)
}

// ParseSpillRecord decodes a whole spill record, checking both checksums;
// payload aliases rec.
func ParseSpillRecord(rec []byte) (id ids.ObjectID, payload []byte, err error) {
	h, err := decodeSpillHeader(rec)
	if err != nil {
		return id, nil, err
	}
	if got := int64(len(rec) - spillHeaderSize); got != h.size {
		return id, nil, fmt.Errorf("%w: object %s: %d payload bytes, header says %d", ErrSpillCorrupt, h.id, got, h.size)
	}
	payload = rec[spillHeaderSize:]
	if got := crc32.Checksum(payload, castagnoli); got != h.crc {
		return id, nil, fmt.Errorf("%w: object %s: payload checksum %08x, want %08x", ErrSpillCorrupt, h.id, got, h.crc)
	}
	return h.id, payload, nil
}

// fileSpiller spills to files in a directory; bytes come from and go to
// the arena through its writable mapping.
type fileSpiller struct {
	dir    string
	prefix string // "<pid>.<arena>.": stores may share a directory
	arena  []byte
}

func (f *fileSpiller) path(id ids.ObjectID) string {
	return filepath.Join(f.dir, f.prefix+id.String()+".spill")
}

func (f *fileSpiller) spill(e *entry) (string, error) {
	data := f.arena[e.off : e.off+e.size]
	h := spillHeader{id: e.id, size: e.size, crc: crc32.Checksum(data, castagnoli)}
	path := f.path(e.id)
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("objstore: spill %s: %w", e.id, err)
	}
	_, err = file.Write(h.encode())
	if err == nil {
		_, err = file.Write(data)
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("objstore: spill %s to %s: %w", e.id, path, err)
	}
	return path, nil
}

// restore reads the record straight into the arena and checks it there:
// on any mismatch the caller frees the extent, so no reader sees it.
func (f *fileSpiller) restore(e *entry) error {
	file, err := os.Open(e.spillPath)
	if err != nil {
		return fmt.Errorf("read spill file: %w", err)
	}
	defer file.Close()
	hb := make([]byte, spillHeaderSize)
	if _, err := io.ReadFull(file, hb); err != nil {
		return fmt.Errorf("%w: %s: header: %v", ErrSpillCorrupt, e.spillPath, err)
	}
	h, err := decodeSpillHeader(hb)
	if err != nil {
		return fmt.Errorf("%s: %w", e.spillPath, err)
	}
	if h.id != e.id || h.size != e.size {
		return fmt.Errorf("%w: %s holds object %s of %d bytes, want %s of %d", ErrSpillCorrupt, e.spillPath, h.id, h.size, e.id, e.size)
	}
	dst := f.arena[e.off : e.off+e.size]
	if _, err := io.ReadFull(file, dst); err != nil {
		return fmt.Errorf("%w: %s: payload: %v", ErrSpillCorrupt, e.spillPath, err)
	}
	if n, _ := file.Read(hb[:1]); n != 0 {
		return fmt.Errorf("%w: %s: bytes after the payload", ErrSpillCorrupt, e.spillPath)
	}
	if got := crc32.Checksum(dst, castagnoli); got != h.crc {
		return fmt.Errorf("%w: %s: payload checksum %08x, want %08x", ErrSpillCorrupt, e.spillPath, got, h.crc)
	}
	return nil
}

func (f *fileSpiller) remove(path string) { os.Remove(path) }
