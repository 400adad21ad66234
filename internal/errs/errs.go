// Package errs holds the sentinel errors that several public packages share,
// so that channel.ErrChannelClosed and core.ErrChannelClosed (and the other
// re-exports) are the same value and errors.Is works whichever a caller
// names.
package errs

import "errors"

var (
	// ErrChannelClosed: the channel was closed; reads and writes after close fail.
	ErrChannelClosed = errors.New("goray: channel closed")
	// ErrTimeout: a blocking call ran past its deadline.
	ErrTimeout = errors.New("goray: timed out")
	// ErrPeerDied: the process at the other end of a channel exited.
	ErrPeerDied = errors.New("goray: peer process died")
	// ErrBadArgument: a call's arguments are invalid.
	ErrBadArgument = errors.New("goray: bad argument")
)

// ErrObjectStoreFull: the node's object store cannot hold an object even
// after evicting and spilling what it may; the message names the sizes.
var ErrObjectStoreFull = errors.New("goray: object store full")
