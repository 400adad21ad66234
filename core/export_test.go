package core

import "github.com/goray/goray/objstore"

// Hooks for the black-box tests in core_test.

// StoreOf is the embedded cluster's object store.
func StoreOf(rt *Runtime) *objstore.Store { return rt.cluster.store }

// AddressOf is the embedded cluster's gRPC address and token file.
func AddressOf(rt *Runtime) (addr, tokenFile string) {
	return rt.w.Address(), rt.cluster.dir + "/token"
}

// HasObject reports whether the driver's value table still has r's object
// (also after Free(r)).
func HasObject(rt *Runtime, r *ObjectRef) bool { return rt.w.HasObject(r.id) }

// NumObjects is the size of the driver's value table.
func NumObjects(rt *Runtime) int { return rt.w.NumObjects() }
