package raylet

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/goray/goray/internal/errs"
)

// Resource names with a meaning of their own.
const (
	CPU    = "CPU"
	GPU    = "GPU"
	Memory = "memory"
)

// unit is the fixed-point scale of resource amounts: Ray's 1/10000, so
// that 0.1 + 0.2 CPUs add up exactly.
const unit = 10000

// Resources is an amount of each resource, in fixed point (1/unit).
type Resources map[string]int64

// FromFloats converts a map of amounts, checking each is finite, not
// negative and at least 1/10000 when not zero. Zero amounts are dropped.
func FromFloats(m map[string]float64) (Resources, error) {
	r := make(Resources, len(m))
	for name, v := range m {
		if name == "" {
			return nil, fmt.Errorf("resource with an empty name: %w: name every resource", errs.ErrBadArgument)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("resource %s = %v: %w: amounts are finite and not negative", name, v, errs.ErrBadArgument)
		}
		q := int64(math.Round(v * unit))
		if v > 0 && q == 0 {
			return nil, fmt.Errorf("resource %s = %v: %w: the smallest amount is 0.0001", name, v, errs.ErrBadArgument)
		}
		if name == GPU && v > 1 && v != math.Trunc(v) {
			return nil, fmt.Errorf("resource GPU = %v: %w: more than one GPU must be a whole number", v, errs.ErrBadArgument)
		}
		if q > 0 {
			r[name] = q
		}
	}
	return r, nil
}

// Floats converts back to float amounts.
func (r Resources) Floats() map[string]float64 {
	m := make(map[string]float64, len(r))
	for k, v := range r {
		m[k] = float64(v) / unit
	}
	return m
}

// Fits reports whether demand fits in r.
func (r Resources) Fits(demand Resources) bool {
	for k, v := range demand {
		if r[k] < v {
			return false
		}
	}
	return true
}

// Sub takes demand out of r (which may go below zero for an unblocked
// task that takes its CPUs back).
func (r Resources) Sub(demand Resources) {
	for k, v := range demand {
		r[k] -= v
	}
}

// Add puts amounts back.
func (r Resources) Add(amount Resources) {
	for k, v := range amount {
		r[k] += v
	}
}

// Clone copies r.
func (r Resources) Clone() Resources { return maps.Clone(r) }

// String renders r as "CPU=2, GPU=0.5" in name order.
func (r Resources) String() string {
	if len(r) == 0 {
		return "nothing"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(r)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%g", k, float64(r[k])/unit)
	}
	return b.String()
}

// Only returns the part of r named in keys.
func (r Resources) only(keys ...string) Resources {
	out := Resources{}
	for _, k := range keys {
		if v, ok := r[k]; ok {
			out[k] = v
		}
	}
	return out
}
