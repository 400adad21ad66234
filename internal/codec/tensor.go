package codec

import (
	"fmt"
	"reflect"

	"github.com/goray/goray/tensor"
)

// formatTensor is a tensor.Tensor: the header, the tensor's metadata
// (tensor.AppendMeta: 8 bytes and 8 per dimension, so the data stays 8-byte
// aligned), then its raw bytes. Decoding aliases the bytes.
const formatTensor uint8 = 4

var (
	tensorPtrType = reflect.TypeFor[*tensor.Tensor]()
	tensorType    = reflect.TypeFor[tensor.Tensor]()
)

// encodeTensor encodes a host tensor as a raw payload that aliases its
// storage; a device tensor is an error that says how to move it.
func encodeTensor(v any) (Encoded, bool, error) {
	var t *tensor.Tensor
	switch x := v.(type) {
	case *tensor.Tensor:
		if x == nil {
			return encodedNull(), true, nil
		}
		t = x
	case tensor.Tensor:
		t = &x
	default:
		return Encoded{}, false, nil
	}
	if t.Device().IsCUDA() {
		return Encoded{}, true, &codecError{
			msg: fmt.Sprintf("codec: encode %s: a device tensor cannot be serialized: copy it to the host (ToHost), "+
				"or move it over a compiled graph's NCCL edge (WithTensorTransport(dag.NCCL))", t),
			errs: []error{ErrUnsupportedType},
		}
	}
	if !t.DType().Valid() {
		return Encoded{}, true, &codecError{msg: "codec: encode tensor: the zero Tensor is invalid: build one with tensor.New or tensor.FromSlice", errs: []error{ErrUnsupportedType}}
	}
	return Encoded{buf: tensor.AppendMeta(nil, t.Meta()), raw: t.Bytes(), format: formatTensor}, true, nil
}

// decodeTensor stores a tensor payload through ptr: *tensor.Tensor (and
// interface targets) alias the payload; a tensor.Tensor target gets the
// same view by value.
func decodeTensor(payload []byte, ptr any) error {
	m, n, err := tensor.ParseMeta(payload)
	if err != nil {
		return badEncoding(targetType(ptr), err, "bad tensor payload: %v", err)
	}
	if m.Device.IsCUDA() {
		return badEncoding(targetType(ptr), nil, "tensor payload names device %s: only host tensors are serialized", m.Device)
	}
	data := payload[n:len(payload):len(payload)]
	t, err := tensor.FromBytes(m.DType, data, m.Shape...)
	if err != nil {
		return badEncoding(targetType(ptr), err, "bad tensor payload: %v", err)
	}
	switch p := ptr.(type) {
	case **tensor.Tensor:
		*p = t
		return nil
	case *tensor.Tensor:
		*p = *t
		return nil
	case *any:
		*p = t
		return nil
	}
	v := settable(ptr)
	switch {
	case v.Type() == tensorType:
		v.Set(reflect.ValueOf(t).Elem())
		return nil
	case v.Kind() == reflect.Interface && tensorPtrType.Implements(v.Type()):
		v.Set(reflect.ValueOf(t))
		return nil
	}
	return mismatch(v.Type(), nil, "payload is a %s: decode into *tensor.Tensor or any", t)
}
