package objstore

import (
	"errors"

	"github.com/goray/goray/internal/errs"
)

var (
	// ErrObjectStoreFull: an object does not fit even after evicting and
	// spilling everything the store may move. The same value as
	// errs.ErrObjectStoreFull, so core can re-export it.
	ErrObjectStoreFull = errs.ErrObjectStoreFull
	// ErrObjectNotFound: no sealed object has that ID (Get gives up when
	// its ctx ends).
	ErrObjectNotFound = errors.New("objstore: object not found")
	// ErrObjectExists: Create of an ID that is already in the store.
	ErrObjectExists = errors.New("objstore: object already exists")
	// ErrNotCreator: Seal of an object by a client that did not create it,
	// or of one already sealed.
	ErrNotCreator = errors.New("objstore: object is not being created by this client")
	// ErrSpillCorrupt: a spilled object's file fails its checksum or does
	// not describe the object: the object is lost, never returned garbled.
	ErrSpillCorrupt = errors.New("objstore: spill file corrupt")
	// ErrClosed: the store or client was closed.
	ErrClosed = errors.New("objstore: closed")
	// ErrBadArgument: a call's arguments are invalid.
	ErrBadArgument = errs.ErrBadArgument
)
