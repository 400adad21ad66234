package nccl

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// The operations. Each checks its arguments, takes the operation lock
// (begin), and moves data through the rings in parts of at most one chunk.
// The collectives are NCCL's ring algorithms, pipelined per part: the
// tensor is split into Size blocks, each block into parts, and for part i
// every rank runs all the ring's steps on part i of the blocks before part
// i+1, so no ring ever holds more than a few parts and large tensors need
// no more memory than small ones. A step that receives and sends acquires
// its outgoing slot and reduces or copies straight from the incoming slot
// into it (and into the output where the step produces it), so data
// crosses each rank once per step with no staging copy.

// Send sends t to rank peer.
func (c *cpuComm) Send(ctx context.Context, t *tensor.Tensor, peer int, _ cuda.Stream) error {
	const op = "Send"
	b, err := c.hostBytes(op, "the tensor", t)
	if err != nil {
		return err
	}
	if err := c.checkPeer(op, peer); err != nil {
		return err
	}
	if err := c.begin(ctx, op); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	sig := opSig{kind: kindP2P, total: uint64(len(b))}
	e := &c.out[peer]
	chunk := c.lay.chunk
	for off := 0; ; off += chunk {
		n := min(chunk, len(b)-off)
		dst, err := c.acquire(ctx, e)
		if err != nil {
			return c.opError(op, err)
		}
		copy(dst[:n], b[off:off+n])
		c.publish(e, sig, n)
		if off+n >= len(b) {
			return nil
		}
	}
}

// Recv receives into t from rank peer.
func (c *cpuComm) Recv(ctx context.Context, t *tensor.Tensor, peer int, _ cuda.Stream) error {
	const op = "Recv"
	b, err := c.hostBytes(op, "the tensor", t)
	if err != nil {
		return err
	}
	if err := c.checkPeer(op, peer); err != nil {
		return err
	}
	if err := c.begin(ctx, op); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	sig := opSig{kind: kindP2P, total: uint64(len(b))}
	e := &c.in[peer]
	chunk := c.lay.chunk
	for off := 0; ; off += chunk {
		n := min(chunk, len(b)-off)
		src, err := c.receive(ctx, e, sig, n)
		if err != nil {
			return c.opError(op, err)
		}
		copy(b[off:off+n], src)
		c.release(e)
		if off+n >= len(b) {
			return nil
		}
	}
}

// AllReduce: ring reduce-scatter, after which rank r holds block r fully
// reduced, then ring all-gather of the reduced blocks.
func (c *cpuComm) AllReduce(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, _ cuda.Stream) error {
	const name = "AllReduce"
	src, dst, err := c.hostPair(name, in, out)
	if err != nil {
		return err
	}
	if !in.SameMeta(out) {
		return c.badArg(name, "in is %s and out is %s: they must have the same dtype and shape", in, out)
	}
	if overlapsNotSame(src, dst) {
		return c.badArg(name, "in and out overlap without being the same tensor")
	}
	red, fin, err := reducerFor(in.DType(), op)
	if err != nil {
		return c.opError(name, err)
	}
	if err := c.begin(ctx, name); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	if err := c.allReduce(ctx, src, dst, in.DType().Size(), red, fin, opSig{kind: kindAllReduce, dtype: uint8(in.DType()), arg: uint16(op), total: uint64(len(src))}); err != nil {
		return c.opError(name, err)
	}
	return nil
}

func (c *cpuComm) allReduce(ctx context.Context, in, out []byte, es int, red reduceFn, fin finishFn, sig opSig) error {
	N, r := c.size, c.rank
	if N == 1 {
		copy(out, in) // a sum over one rank; Avg divides by 1
		return nil
	}
	right, left := &c.out[(r+1)%N], &c.in[(r+N-1)%N]
	n := len(in) / es
	ce := c.lay.chunk / es
	parts := max(1, ceilDiv(ceilDiv(n, N), ce))
	for p := range parts {
		// Reduce-scatter: send block r-1, then receive block r-j, reduce
		// it with ours and pass it on, until block r arrives with every
		// other rank's contribution.
		lo, hi := blockPart(n, N, (r+N-1)%N, p, ce, es)
		if err := c.sendStep(ctx, right, sig, in[lo:hi]); err != nil {
			return err
		}
		for j := 2; j < N; j++ {
			lo, hi = blockPart(n, N, (r+N-j)%N, p, ce, es)
			if err := c.reduceStep(ctx, left, right, sig, in[lo:hi], nil, red, nil); err != nil {
				return err
			}
		}
		lo, hi = blockPart(n, N, r, p, ce, es)
		if err := c.reduceStep(ctx, left, right, sig, in[lo:hi], out[lo:hi], red, fin); err != nil {
			return err
		}
		// All-gather: pass each reduced block on, keeping a copy.
		for j := 1; j < N-1; j++ {
			lo, hi = blockPart(n, N, (r+N-j)%N, p, ce, es)
			if err := c.copyStep(ctx, left, right, sig, out[lo:hi]); err != nil {
				return err
			}
		}
		lo, hi = blockPart(n, N, (r+1)%N, p, ce, es)
		if err := c.copyStep(ctx, left, nil, sig, out[lo:hi]); err != nil {
			return err
		}
	}
	return nil
}

// AllGather: ring all-gather; rank r's input goes around the ring once.
func (c *cpuComm) AllGather(ctx context.Context, in, out *tensor.Tensor, _ cuda.Stream) error {
	const name = "AllGather"
	src, dst, err := c.hostPair(name, in, out)
	if err != nil {
		return err
	}
	if in.DType() != out.DType() || out.NumElements() != c.size*in.NumElements() {
		return c.badArg(name, "in is %s and out is %s: out must hold Size (%d) times in's elements, of the same dtype", in, out, c.size)
	}
	ib := len(src)
	own := dst[c.rank*ib : (c.rank+1)*ib]
	inPlace := ib > 0 && unsafe.SliceData(src) == unsafe.SliceData(own)
	if !inPlace && overlaps(src, dst) {
		return c.badArg(name, "in overlaps out without being out's block for this rank (in place, in must be out's elements [rank×len(in), (rank+1)×len(in)))")
	}
	if err := c.begin(ctx, name); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	if err := c.allGather(ctx, src, dst, in.DType(), inPlace); err != nil {
		return c.opError(name, err)
	}
	return nil
}

func (c *cpuComm) allGather(ctx context.Context, in, out []byte, dt tensor.DType, inPlace bool) error {
	N, r := c.size, c.rank
	ib := len(in)
	if !inPlace {
		copy(out[r*ib:(r+1)*ib], in)
	}
	if N == 1 {
		return nil
	}
	sig := opSig{kind: kindAllGather, dtype: uint8(dt), total: uint64(len(out))}
	right, left := &c.out[(r+1)%N], &c.in[(r+N-1)%N]
	ce := c.lay.chunk
	parts := max(1, ceilDiv(ib, ce))
	for p := range parts {
		lo, hi := blockPart(N*ib, N, r, p, ce, 1)
		if err := c.sendStep(ctx, right, sig, out[lo:hi]); err != nil {
			return err
		}
		for j := 1; j < N-1; j++ {
			lo, hi = blockPart(N*ib, N, (r+N-j)%N, p, ce, 1)
			if err := c.copyStep(ctx, left, right, sig, out[lo:hi]); err != nil {
				return err
			}
		}
		lo, hi = blockPart(N*ib, N, (r+1)%N, p, ce, 1)
		if err := c.copyStep(ctx, left, nil, sig, out[lo:hi]); err != nil {
			return err
		}
	}
	return nil
}

// ReduceScatter: the reduce-scatter half of AllReduce, ending with block
// r in out.
func (c *cpuComm) ReduceScatter(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, _ cuda.Stream) error {
	const name = "ReduceScatter"
	src, dst, err := c.hostPair(name, in, out)
	if err != nil {
		return err
	}
	if in.DType() != out.DType() || in.NumElements() != c.size*out.NumElements() {
		return c.badArg(name, "in is %s and out is %s: in must hold Size (%d) times out's elements, of the same dtype", in, out, c.size)
	}
	ob := len(dst)
	own := src[c.rank*ob : (c.rank+1)*ob]
	if overlaps(src, dst) && !(ob > 0 && unsafe.SliceData(dst) == unsafe.SliceData(own)) {
		return c.badArg(name, "out overlaps in without being in's block for this rank (in place, out must be in's elements [rank×len(out), (rank+1)×len(out)))")
	}
	red, fin, err := reducerFor(in.DType(), op)
	if err != nil {
		return c.opError(name, err)
	}
	if err := c.begin(ctx, name); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	sig := opSig{kind: kindReduceScatter, dtype: uint8(in.DType()), arg: uint16(op), total: uint64(len(src))}
	if err := c.reduceScatter(ctx, src, dst, in.DType().Size(), red, fin, sig); err != nil {
		return c.opError(name, err)
	}
	return nil
}

func (c *cpuComm) reduceScatter(ctx context.Context, in, out []byte, es int, red reduceFn, fin finishFn, sig opSig) error {
	N, r := c.size, c.rank
	if N == 1 {
		copy(out, in)
		return nil
	}
	right, left := &c.out[(r+1)%N], &c.in[(r+N-1)%N]
	m := len(out) / es
	ce := c.lay.chunk / es
	parts := max(1, ceilDiv(m, ce))
	for p := range parts {
		lo, hi := blockPart(N*m, N, (r+N-1)%N, p, ce, es)
		if err := c.sendStep(ctx, right, sig, in[lo:hi]); err != nil {
			return err
		}
		for j := 2; j < N; j++ {
			lo, hi = blockPart(N*m, N, (r+N-j)%N, p, ce, es)
			if err := c.reduceStep(ctx, left, right, sig, in[lo:hi], nil, red, nil); err != nil {
				return err
			}
		}
		lo, hi = blockPart(N*m, N, r, p, ce, es)
		olo, ohi := blockPart(m, 1, 0, p, ce, es)
		if err := c.reduceStep(ctx, left, nil, sig, in[lo:hi], out[olo:ohi], red, fin); err != nil {
			return err
		}
	}
	return nil
}

// Broadcast: a pipelined chain root → root+1 → … → root-1; each rank
// passes a part on as soon as it has it.
func (c *cpuComm) Broadcast(ctx context.Context, t *tensor.Tensor, root int, _ cuda.Stream) error {
	const name = "Broadcast"
	b, err := c.hostBytes(name, "the tensor", t)
	if err != nil {
		return err
	}
	if root < 0 || root >= c.size {
		return c.badArg(name, "root %d is outside [0, %d)", root, c.size)
	}
	if err := c.begin(ctx, name); err != nil {
		return err
	}
	defer c.opMu.Unlock()
	N, r := c.size, c.rank
	if N == 1 {
		return nil
	}
	sig := opSig{kind: kindBroadcast, dtype: uint8(t.DType()), arg: uint16(root), total: uint64(len(b))}
	var right *sendEnd
	if (r+1)%N != root {
		right = &c.out[(r+1)%N]
	}
	left := &c.in[(r+N-1)%N]
	ce := c.lay.chunk
	parts := max(1, ceilDiv(len(b), ce))
	for p := range parts {
		lo, hi := blockPart(len(b), 1, 0, p, ce, 1)
		var err error
		if r == root {
			err = c.sendStep(ctx, right, sig, b[lo:hi])
		} else {
			err = c.copyStep(ctx, left, right, sig, b[lo:hi])
		}
		if err != nil {
			return c.opError(name, err)
		}
	}
	return nil
}

// sendStep sends part src.
func (c *cpuComm) sendStep(ctx context.Context, right *sendEnd, sig opSig, src []byte) error {
	slot, err := c.acquire(ctx, right)
	if err != nil {
		return err
	}
	copy(slot, src)
	c.publish(right, sig, len(src))
	return nil
}

// reduceStep receives a part, reduces it with a, and writes the result to
// out (if not nil; then averaged by fin, if not nil) and to right (if not
// nil). The outgoing slot is acquired first: waiting for it holds nothing
// another rank waits for.
func (c *cpuComm) reduceStep(ctx context.Context, left *recvEnd, right *sendEnd, sig opSig, a, out []byte, red reduceFn, fin finishFn) error {
	var slot []byte
	if right != nil {
		var err error
		if slot, err = c.acquire(ctx, right); err != nil {
			return err
		}
	}
	in, err := c.receive(ctx, left, sig, len(a))
	if err != nil {
		return err
	}
	if out == nil {
		red(slot[:len(a)], a, in)
	} else {
		red(out, a, in)
		if fin != nil {
			fin(out, c.size)
		}
		if right != nil {
			copy(slot, out)
		}
	}
	c.release(left)
	if right != nil {
		c.publish(right, sig, len(a))
	}
	return nil
}

// copyStep receives a part into out and passes it on to right (if not
// nil).
func (c *cpuComm) copyStep(ctx context.Context, left *recvEnd, right *sendEnd, sig opSig, out []byte) error {
	var slot []byte
	if right != nil {
		var err error
		if slot, err = c.acquire(ctx, right); err != nil {
			return err
		}
	}
	in, err := c.receive(ctx, left, sig, len(out))
	if err != nil {
		return err
	}
	copy(out, in)
	if right != nil {
		copy(slot, in)
	}
	c.release(left)
	if right != nil {
		c.publish(right, sig, len(out))
	}
	return nil
}

// blockPart is the byte range of part p of block b, when n elements of es
// bytes are split into N blocks (the first n%N one element longer) and
// each block into parts of ce elements. Past a block's end the range is
// empty: every rank sends a part for every step, empty or not, so the
// rings stay in step and a disagreement about sizes is seen.
func blockPart(n, N, b, p, ce, es int) (lo, hi int) {
	base, rem := n/N, n%N
	start, length := b*base+min(b, rem), base
	if b < rem {
		length++
	}
	l := min(p*ce, length)
	h := min(l+ce, length)
	return (start + l) * es, (start + h) * es
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Argument checks.

func (c *cpuComm) badArg(op, format string, args ...any) error {
	return fmt.Errorf("nccl: cpu rank %d: %s: %w: %s", c.rank, op, ErrBadArgument, fmt.Sprintf(format, args...))
}

func (c *cpuComm) hostBytes(op, what string, t *tensor.Tensor) ([]byte, error) {
	if t == nil {
		return nil, c.badArg(op, "%s is nil", what)
	}
	if t.Device().IsCUDA() {
		return nil, c.badArg(op, "%s is %s: the \"cpu\" backend moves host tensors; copy it to the host (ToHost) or use the \"nccl\" backend", what, t)
	}
	b := t.Bytes()
	if len(b) != t.NumBytes() {
		return nil, c.badArg(op, "%s %s has no storage (was it freed?)", what, t)
	}
	return b, nil
}

func (c *cpuComm) hostPair(op string, in, out *tensor.Tensor) ([]byte, []byte, error) {
	src, err := c.hostBytes(op, "in", in)
	if err != nil {
		return nil, nil, err
	}
	dst, err := c.hostBytes(op, "out", out)
	if err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

func (c *cpuComm) checkPeer(op string, peer int) error {
	if peer < 0 || peer >= c.size {
		return c.badArg(op, "peer %d is outside [0, %d)", peer, c.size)
	}
	if peer == c.rank {
		return c.badArg(op, "peer %d is this rank: a rank cannot send to itself (copy the tensor instead)", peer)
	}
	return nil
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// overlapsNotSame reports whether a and b overlap other than by being
// the same memory.
func overlapsNotSame(a, b []byte) bool {
	return overlaps(a, b) && !(unsafe.SliceData(a) == unsafe.SliceData(b) && len(a) == len(b))
}
