package codec_test

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/tensor"
)

func TestTensorRoundTripAliases(t *testing.T) {
	x, err := tensor.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 3, 2)
	require.NoError(t, err)
	e, err := codec.Encode(x)
	require.NoError(t, err)
	buf := make([]byte, e.Size())
	e.WriteTo(buf)
	assert.True(t, codec.IsRaw(buf))

	var y *tensor.Tensor
	require.NoError(t, codec.Unmarshal(buf, &y))
	assert.True(t, y.Equal(x))
	assert.Equal(t, unsafe.SliceData(buf[len(buf)-24:]), unsafe.SliceData(y.Bytes()), "a decoded tensor aliases the buffer")
	v, err := tensor.As[float32](y)
	require.NoError(t, err)
	assert.Equal(t, []float32{1, 2, 3, 4, 5, 6}, v)

	var a any
	require.NoError(t, codec.Unmarshal(buf, &a))
	assert.True(t, a.(*tensor.Tensor).Equal(x))
	var byValue tensor.Tensor
	require.NoError(t, codec.Unmarshal(buf, &byValue))
	assert.True(t, byValue.Equal(x))
	val, err := codec.Encode(*x)
	require.NoError(t, err)
	assert.Equal(t, buf, val.Bytes())

	var wrong []float32
	assert.ErrorIs(t, codec.Unmarshal(buf, &wrong), codec.ErrTypeMismatch)
}

func TestTensorEdgeCases(t *testing.T) {
	var nilT *tensor.Tensor
	b, err := codec.Marshal(nilT)
	require.NoError(t, err)
	var back *tensor.Tensor
	require.NoError(t, codec.Unmarshal(b, &back))
	assert.Nil(t, back)

	scalar := tensor.Zeros(tensor.BFloat16)
	b, err = codec.Marshal(scalar)
	require.NoError(t, err)
	require.NoError(t, codec.Unmarshal(b, &back))
	assert.True(t, back.Equal(scalar))

	dev, err := tensor.FromDevicePtr(tensor.Float16, tensor.CUDA(0), 0x1000, nil, 8)
	require.NoError(t, err)
	_, err = codec.Encode(dev)
	assert.ErrorIs(t, err, codec.ErrUnsupportedType)
	assert.ErrorContains(t, err, "NCCL edge")

	_, err = codec.Encode(tensor.Tensor{})
	assert.ErrorContains(t, err, "zero Tensor")

	good, _ := codec.Marshal(tensor.Zeros(tensor.Int32, 2))
	bad := append([]byte{}, good...)
	bad[8] = 77 // the dtype byte
	assert.ErrorIs(t, codec.Unmarshal(bad, &back), codec.ErrBadEncoding)
	assert.ErrorIs(t, codec.Unmarshal(good[:len(good)-1], &back), codec.ErrBadEncoding)
}

// A tensor inside a struct travels through CBOR (MarshalBinary), copied.
func TestTensorInStruct(t *testing.T) {
	type batch struct {
		ID int
		X  *tensor.Tensor
	}
	x, _ := tensor.FromSlice([]int64{1, 2, 3})
	b, err := codec.Marshal(batch{ID: 7, X: x})
	require.NoError(t, err)
	var got batch
	require.NoError(t, codec.Unmarshal(b, &got))
	assert.Equal(t, 7, got.ID)
	assert.True(t, got.X.Equal(x))
}
