package shm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	line := "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50 18446744073709551615"
	state, start, err := parseStat([]byte(line))
	require.NoError(t, err)
	assert.Equal(t, byte('S'), state)
	assert.Equal(t, uint64(987654), start)
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 z"} {
		_, _, err := parseStat([]byte(bad))
		assert.Error(t, err, bad)
	}
}
