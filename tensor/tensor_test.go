package tensor_test

import (
	"errors"
	"math"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/tensor"
)

func TestDTypes(t *testing.T) {
	for d := tensor.Float32; d.Valid(); d++ {
		got, err := tensor.ParseDType(d.String())
		require.NoError(t, err)
		assert.Equal(t, d, got)
		assert.Positive(t, d.Size())
	}
	for s, want := range map[string]tensor.DType{"fp16": tensor.Float16, "bf16": tensor.BFloat16, "i64": tensor.Int64, "F32": tensor.Float32} {
		got, err := tensor.ParseDType(s)
		require.NoError(t, err)
		assert.Equal(t, want, got, s)
	}
	_, err := tensor.ParseDType("complex64")
	assert.ErrorContains(t, err, "use one of")
	assert.Equal(t, 0, tensor.Invalid.Size())
	assert.Equal(t, "dtype(200)", tensor.DType(200).String())
	assert.Equal(t, tensor.Float64, tensor.DTypeOf[float64]())
	assert.Equal(t, tensor.Bool, tensor.DTypeOf[bool]())
}

func TestFromSliceAliases(t *testing.T) {
	data := []float32{1, 2, 3, 4, 5, 6}
	x, err := tensor.FromSlice(data, 2, 3)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 3}, x.Shape())
	assert.Equal(t, 6, x.NumElements())
	assert.Equal(t, 24, x.NumBytes())
	assert.Equal(t, tensor.CPU, x.Device())
	v, err := tensor.As[float32](x)
	require.NoError(t, err)
	v[0] = 42
	assert.Equal(t, float32(42), data[0], "As and FromSlice alias the slice")
	_, err = tensor.As[int32](x)
	assert.ErrorIs(t, err, tensor.ErrBadTensor)
	assert.Equal(t, "tensor(float32, [2 3], cpu)", x.String())
	assert.True(t, x.HasShape([]int{2, 3}))
	assert.False(t, x.HasShape([]int{3, 2}))
	assert.False(t, x.HasShape([]int{6}))

	_, err = tensor.FromSlice(data, 4, 2)
	assert.ErrorContains(t, err, "do not fill shape")
	one, err := tensor.FromSlice([]int64{7})
	require.NoError(t, err)
	assert.Equal(t, []int{1}, one.Shape())
}

func TestBadShapes(t *testing.T) {
	_, err := tensor.New(tensor.Float32, 2, -1)
	assert.ErrorContains(t, err, "negative")
	_, err = tensor.New(tensor.Invalid, 2)
	assert.ErrorIs(t, err, tensor.ErrBadTensor)
	_, err = tensor.New(tensor.Float64, math.MaxInt/2, 4)
	assert.ErrorContains(t, err, "overflows")
	_, err = tensor.New(tensor.Uint8, make([]int, tensor.MaxDims+1)...)
	assert.ErrorContains(t, err, "dimensions")
	_, err = tensor.FromBytes(tensor.Int32, make([]byte, 5), 2)
	assert.ErrorContains(t, err, "needs 8")
	_, err = tensor.FromDevicePtr(tensor.Float32, tensor.CPU, 1, nil, 2)
	assert.ErrorContains(t, err, "CUDA")
	assert.Panics(t, func() { tensor.Zeros(tensor.Float32, -1) })
}

func TestScalarAndEmpty(t *testing.T) {
	s := tensor.Zeros(tensor.Int64)
	assert.Equal(t, 0, s.NDim())
	assert.Equal(t, 1, s.NumElements())
	e := tensor.Zeros(tensor.Float16, 0, 3)
	assert.Equal(t, 0, e.NumBytes())
	v, err := tensor.As[uint16](e)
	require.NoError(t, err)
	assert.Empty(t, v)
}

func TestCloneEqualFree(t *testing.T) {
	x, _ := tensor.FromSlice([]int32{1, 2, 3})
	c, err := x.Clone()
	require.NoError(t, err)
	assert.True(t, c.Equal(x))
	v, _ := tensor.As[int32](c)
	v[0] = 9
	assert.False(t, c.Equal(x), "Clone copies")
	freed := 0
	d, err := tensor.FromDevicePtr(tensor.Float32, tensor.CUDA(0), 0x1000, func() { freed++ }, 4)
	require.NoError(t, err)
	assert.Nil(t, d.Bytes())
	assert.Equal(t, uintptr(0x1000), d.DevicePtr())
	_, err = tensor.As[float32](d)
	assert.ErrorContains(t, err, "ToHost")
	d.Free()
	d.Free()
	assert.Equal(t, 1, freed, "Free is idempotent")
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []tensor.Meta{
		{DType: tensor.BFloat16, Shape: []int{4, 5, 6}, Device: tensor.CUDA(3)},
		{DType: tensor.Bool, Shape: []int{}, Device: tensor.CPU},
		{DType: tensor.Uint64, Shape: []int{0}},
	} {
		b := tensor.AppendMeta([]byte{0xff}, m)
		assert.Len(t, b, 1+tensor.MetaSize(len(m.Shape)))
		got, n, err := tensor.ParseMeta(b[1:])
		require.NoError(t, err)
		assert.Equal(t, tensor.MetaSize(len(m.Shape)), n)
		assert.Equal(t, m, got)
	}
}

func TestParseMetaRejects(t *testing.T) {
	good := tensor.AppendMeta(nil, tensor.Meta{DType: tensor.Float32, Shape: []int{2, 2}})
	for name, b := range map[string][]byte{
		"short":     good[:5],
		"truncated": good[:12],
		"dtype":     append([]byte{99}, good[1:]...),
		"device":    append([]byte{1, 7}, good[2:]...),
		"ndim":      append([]byte{1, 0, 40}, good[3:]...),
		"cpu index": append(append([]byte{}, good[:4]...), append([]byte{1, 0, 0, 0}, good[8:]...)...),
	} {
		_, _, err := tensor.ParseMeta(b)
		assert.ErrorIs(t, err, tensor.ErrBadTensor, name)
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add(tensor.AppendMeta(nil, tensor.Meta{DType: tensor.Float16, Shape: []int{3, 1}}))
	f.Add(tensor.AppendMeta(nil, tensor.Meta{DType: tensor.Int8, Device: tensor.CUDA(1)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := tensor.ParseMeta(b)
		if err != nil {
			if !errors.Is(err, tensor.ErrBadTensor) {
				t.Fatalf("error %v does not wrap ErrBadTensor", err)
			}
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		if _, err := m.NumBytes(); err != nil {
			t.Fatalf("accepted metadata has a bad size: %v", err)
		}
		again, _, err := tensor.ParseMeta(tensor.AppendMeta(nil, m))
		if err != nil || again.DType != m.DType || len(again.Shape) != len(m.Shape) {
			t.Fatalf("re-encoding %v gave %v, %v", m, again, err)
		}
	})
}

func TestHalfConversions(t *testing.T) {
	for _, f := range []float32{0, 1, -2.5, 65504, 0.000061035156} {
		assert.Equal(t, f, tensor.F16ToFloat32(tensor.F16(f)), "f16 %v", f)
	}
	for _, f := range []float32{0, 1, -2.5, 3.140625, 1e30} {
		got := tensor.BF16ToFloat32(tensor.BF16(f))
		assert.InEpsilon(t, float64(f)+1e-30, float64(got)+1e-30, 1.0/128, "bf16 %v", f)
	}
	assert.True(t, math.IsNaN(float64(tensor.BF16ToFloat32(tensor.BF16(float32(math.NaN()))))))
	assert.Equal(t, uint16(0x3f80), tensor.BF16(1))
}

func TestMarshalBinary(t *testing.T) {
	x, _ := tensor.FromSlice([]uint16{tensor.F16(1), tensor.F16(2)})
	b, err := x.MarshalBinary()
	require.NoError(t, err)
	var y tensor.Tensor
	require.NoError(t, y.UnmarshalBinary(b))
	assert.True(t, y.Equal(x))
	assert.NotSame(t, unsafe.SliceData(x.Bytes()), unsafe.SliceData(y.Bytes()), "UnmarshalBinary copies")
	assert.ErrorIs(t, y.UnmarshalBinary(b[:len(b)-1]), tensor.ErrBadTensor)
	var zero tensor.Tensor
	_, err = zero.MarshalBinary()
	assert.ErrorContains(t, err, "zero Tensor")
}
