// Package rpc is goray's control plane: the protobuf messages and gRPC
// services of the GCS, the raylet and the core worker (goray.proto, with
// its generated code committed; `go generate ./internal/rpc` regenerates it
// with protoc from Debian's protobuf-compiler and protoc-gen-go{,-grpc}),
// and the cluster token every call must carry.
//
// A cluster generates a random token when it starts and stores it in a file
// only its user can read (mode 0600). Servers made with NewServer refuse,
// with codes.Unauthenticated, any call whose "goray-token" metadata is not
// that token; clients made with Dial attach it to every call. Servers
// listen on loopback unless told otherwise.
package rpc
