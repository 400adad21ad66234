package nccl

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/goray/goray/internal/shm"
)

// The CPU backend's UniqueID: what every rank needs to rendezvous, in 128
// bytes that may have crossed an RPC, so Init checks all of it.
//
//	[0:4]    magic "GRCC"
//	[4]      version
//	[5]      slots per ring
//	[6:8]    zero
//	[8:12]   chunk: bytes of one slot (little-endian)
//	[12]     length n of the segment name
//	[13:13+n] segment name, goray.<pid>.<start>.nccl-<16 hex digits>
//	[13+n:124] zero
//	[124:128] CRC-32 (IEEE) of bytes [0:124]
const (
	idMagic   = "GRCC"
	idVersion = 1
	idNameOff = 13
	idNameMax = 124 - idNameOff
	idCRCOff  = 124

	// idLabelPrefix starts the label of every CPU communicator's segment.
	idLabelPrefix = "nccl-"
	idNonceHex    = 16
)

// cpuID is a parsed UniqueID.
type cpuID struct {
	name  string // the segment's name in /dev/shm
	chunk int
	slots int
}

// newCPUID makes a fresh ID owned by this process: its segment name carries
// this process's identity, so shm.CleanupStale removes a segment left
// behind when this process dies.
func newCPUID(chunk, slots int) (UniqueID, error) {
	var nonce [idNonceHex / 2]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return UniqueID{}, fmt.Errorf("nccl: cpu: random unique id: %w", err)
	}
	name := shm.Name(idLabelPrefix + hex.EncodeToString(nonce[:]))
	return encodeCPUID(cpuID{name: name, chunk: chunk, slots: slots})
}

func encodeCPUID(c cpuID) (UniqueID, error) {
	var id UniqueID
	if len(c.name) > idNameMax {
		return id, fmt.Errorf("%w: cpu: segment name %q is longer than %d bytes", ErrBadArgument, c.name, idNameMax)
	}
	copy(id[0:4], idMagic)
	id[4] = idVersion
	id[5] = byte(c.slots)
	binary.LittleEndian.PutUint32(id[8:12], uint32(c.chunk))
	id[12] = byte(len(c.name))
	copy(id[idNameOff:], c.name)
	binary.LittleEndian.PutUint32(id[idCRCOff:], crc32.ChecksumIEEE(id[:idCRCOff]))
	return id, nil
}

// parseCPUID checks and decodes an ID. The bytes may come from anywhere
// (an RPC, a fuzzer): every field is validated, and the error says which
// one is wrong.
func parseCPUID(id UniqueID) (cpuID, error) {
	bad := func(format string, args ...any) (cpuID, error) {
		return cpuID{}, fmt.Errorf("%w: cpu: unique id: "+format, append([]any{ErrBadArgument}, args...)...)
	}
	if string(id[0:4]) != idMagic {
		if id == (UniqueID{}) {
			return bad("all zero: make one with NewUniqueID of the \"cpu\" backend and pass it to every rank")
		}
		return bad("no %q magic: it was not made by the \"cpu\" backend's NewUniqueID (an NCCL id?)", idMagic)
	}
	if sum := crc32.ChecksumIEEE(id[:idCRCOff]); sum != binary.LittleEndian.Uint32(id[idCRCOff:]) {
		return bad("checksum mismatch: the 128 bytes were damaged in transit")
	}
	if id[4] != idVersion {
		return bad("version %d, this binary speaks version %d", id[4], idVersion)
	}
	if id[6] != 0 || id[7] != 0 {
		return bad("reserved bytes are not zero")
	}
	c := cpuID{slots: int(id[5]), chunk: int(binary.LittleEndian.Uint32(id[8:12]))}
	if c.slots < minSlots || c.slots > maxSlots {
		return bad("%d slots per ring, want %d to %d", c.slots, minSlots, maxSlots)
	}
	if c.chunk < minChunk || c.chunk > maxChunk || c.chunk%minChunk != 0 {
		return bad("chunk of %d bytes, want a multiple of %d from %d to %d", c.chunk, minChunk, minChunk, maxChunk)
	}
	n := int(id[12])
	if n == 0 || n > idNameMax {
		return bad("segment name length %d, want 1 to %d", n, idNameMax)
	}
	for _, b := range id[idNameOff+n : idCRCOff] {
		if b != 0 {
			return bad("bytes after the segment name are not zero")
		}
	}
	c.name = string(id[idNameOff : idNameOff+n])
	owner, ok := shm.Owner(c.name)
	if !ok {
		return bad("segment name %q is not a goray segment name", c.name)
	}
	nonce, ok := strings.CutPrefix(c.name, shm.NameFor(owner, idLabelPrefix))
	if !ok || len(nonce) != idNonceHex || strings.ToLower(nonce) != nonce {
		return bad("segment name %q does not end in %s<%d hex digits>", c.name, idLabelPrefix, idNonceHex)
	}
	if _, err := hex.DecodeString(nonce); err != nil {
		return bad("segment name %q does not end in %s<%d hex digits>", c.name, idLabelPrefix, idNonceHex)
	}
	return c, nil
}
