package nccl

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// FuzzParseUniqueID: whatever 128 bytes arrive, parsing never panics, and
// either fails with ErrBadArgument or succeeds on bytes that encode back
// to themselves. Each input is parsed as it is and again with its checksum
// made right, so the fuzzer reaches the checks behind the checksum.
func FuzzParseUniqueID(f *testing.F) {
	valid, err := CPU.NewUniqueID()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid[:])
	f.Add(make([]byte, len(UniqueID{})))
	damaged := valid
	damaged[20] ^= 0x40
	f.Add(damaged[:])
	long := valid
	long[12] = 111
	f.Add(long[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		var id UniqueID
		copy(id[:], b)
		checkParse(t, id)
		binary.LittleEndian.PutUint32(id[idCRCOff:], crc32.ChecksumIEEE(id[:idCRCOff]))
		checkParse(t, id)
	})
}

func checkParse(t *testing.T, id UniqueID) {
	c, err := parseCPUID(id)
	if err != nil {
		if !errors.Is(err, ErrBadArgument) {
			t.Fatalf("error %v does not wrap ErrBadArgument", err)
		}
		return
	}
	again, err := encodeCPUID(c)
	if err != nil {
		t.Fatalf("parsed id does not encode: %v", err)
	}
	if again != id {
		t.Fatalf("round trip changed the id:\n%x\n%x", id, again)
	}
}
