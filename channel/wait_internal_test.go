package channel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBudget(t *testing.T) {
	b := newBudget(16 * time.Microsecond)
	assert.Equal(t, 16*time.Microsecond, b.next(), "starts full")
	// Failures halve it down to the floor.
	for range 10 {
		b.failed()
	}
	assert.Equal(t, minSpin, b.cur)
	// Below full, every probeEvery-th wait probes with the full budget.
	var got []time.Duration
	for range 2 * probeEvery {
		got = append(got, b.next())
	}
	probes := 0
	for _, d := range got {
		if d == b.max {
			probes++
		} else {
			assert.Equal(t, minSpin, d)
		}
	}
	assert.Equal(t, 2, probes)
	// One success restores it.
	b.succeeded()
	assert.Equal(t, b.max, b.next())

	off := newSpinner(0)
	assert.Zero(t, off.spin.max)
	assert.Zero(t, off.yield.max, "Spin(0) turns off yielding too")
	on := newSpinner(20 * time.Microsecond)
	assert.Equal(t, 200*time.Microsecond, on.yield.max)
}
