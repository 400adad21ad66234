package codec

import (
	"errors"
	"fmt"
	"reflect"
)

var (
	// ErrBadEncoding: bytes could not be decoded into the requested type.
	// Every error from Decode, Unmarshal and DecodeAs wraps it.
	ErrBadEncoding = errors.New("codec: bad encoding")
	// ErrTypeMismatch: the bytes are a valid encoding, of a value that does
	// not fit the requested type. Errors wrapping it also wrap ErrBadEncoding.
	ErrTypeMismatch = errors.New("codec: type mismatch")
	// ErrUnsupportedType: Encode was given a value it cannot encode: one
	// holding a func, a channel, a complex number or an unsafe pointer,
	// nesting deeper than 64 levels (a pointer cycle, say), or a time.Time
	// outside years 0..9999.
	ErrUnsupportedType = errors.New("codec: unsupported type")
)

// codecError carries a message that names the problem and its fix, and
// unwraps to the sentinels and the underlying cause, so that callers can use
// errors.Is and errors.As (e.g. for *cbor.UnmarshalTypeError) without the
// message repeating the sentinels' text.
type codecError struct {
	msg  string
	errs []error
}

func (e *codecError) Error() string   { return e.msg }
func (e *codecError) Unwrap() []error { return e.errs }

// badEncoding returns a decode error about a value of type t: the bytes are
// not a valid encoding. cause may be nil.
func badEncoding(t reflect.Type, cause error, format string, args ...any) error {
	errs := []error{ErrBadEncoding}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &codecError{msg: decodePrefix(t) + fmt.Sprintf(format, args...), errs: errs}
}

// mismatch returns a decode error about a value of type t: the bytes are
// valid but hold something else. cause may be nil.
func mismatch(t reflect.Type, cause error, format string, args ...any) error {
	errs := []error{ErrBadEncoding, ErrTypeMismatch}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &codecError{msg: decodePrefix(t) + fmt.Sprintf(format, args...), errs: errs}
}

func decodePrefix(t reflect.Type) string {
	if t == nil {
		return "codec: decode: "
	}
	return "codec: decode into " + t.String() + ": "
}
