package dag

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/core"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// The GPU transport in an actor's loop: communicators joined when the
// loop starts, and the SEND, RECV and collective steps of its schedule.

// commInitTimeout bounds how long a rank waits for the others to join.
const commInitTimeout = 60 * time.Second

// gpusFn runs in an actor: the GPUs it holds (the raylet's IDs).
func gpusFn(ctx context.Context, _ bool) ([]int, error) {
	rc, ok := core.RuntimeContextFrom(ctx)
	if !ok {
		return nil, errors.New("goray.dag.gpus runs only in an actor")
	}
	return append([]int{}, rc.GPUIDs...), nil
}

// commIDFn runs in a communicator's first rank: a fresh unique ID of the
// named backend, made where the backend's library is.
func commIDFn(ctx context.Context, backend string) ([]byte, error) {
	b, err := nccl.Lookup(backend)
	if err != nil {
		return nil, err
	}
	id, err := b.NewUniqueID()
	if err != nil {
		return nil, err
	}
	return id[:], nil
}

// initComms joins every communicator of the spec at once (nccl.JoinAll),
// within commInitTimeout.
func initComms(ctx context.Context, specs []commSpec) ([]nccl.Communicator, error) {
	ctx, cancel := context.WithTimeout(ctx, commInitTimeout)
	defer cancel()
	joins := make([]nccl.Join, len(specs))
	for i, cs := range specs {
		joins[i] = nccl.Join{Backend: cs.Backend, ID: cs.ID, Rank: cs.Rank, Size: cs.Size, Device: cs.Device}
	}
	return nccl.JoinAll(ctx, joins)
}

// stream is the CUDA stream a communicator's operations use: its device's
// default stream.
func (l *loop) stream(c int) cuda.Stream {
	return cuda.Default(max(l.spec.Comms[c].Device, 0))
}

// checkDevice says whether the communicator c can move t: a GPU tensor
// for a DeviceCommunicator (nccl), a host tensor for any other (cpu).
func (l *loop) checkDevice(c int, t *tensor.Tensor) error {
	_, onGPU := l.comms[c].(nccl.DeviceCommunicator)
	switch {
	case onGPU && !t.Device().IsCUDA():
		return fmt.Errorf("%s is on the host, but the %s backend moves GPU tensors: move it to the GPU (ToDevice), or compile with dag.Communicator(nccl.CPU)", t, l.comms[c].Backend())
	case !onGPU && t.Device().IsCUDA():
		return fmt.Errorf("%s is on %s, but the graph's communicator is the %s backend, which moves host tensors: return host tensors, or compile without dag.Communicator(nccl.CPU)", t, t.Device(), l.comms[c].Backend())
	}
	return nil
}

// deviceFor is where communicator c's received tensors go: this rank's
// GPU when the sender's tensor was on a GPU, else the host.
func (l *loop) deviceFor(c int, like tensor.Device) tensor.Device {
	if like.IsCUDA() {
		return tensor.CUDA(max(l.spec.Comms[c].Device, 0))
	}
	return tensor.CPU
}

// reuse returns the tensor in *slot when it has this dtype, shape and
// device, or a new one it leaves there (freeing the old one). A received
// tensor is valid until the next execution reaches the same step: a
// method that keeps one copies it.
func reuse(slot **tensor.Tensor, d tensor.Device, dtype tensor.DType, shape []int) (*tensor.Tensor, error) {
	if t := *slot; t != nil && t.Device() == d && t.DType() == dtype && t.HasShape(shape) {
		return t, nil
	}
	(*slot).Free()
	*slot = nil
	t, err := tensor.Empty(dtype, d, shape...)
	if err != nil {
		return nil, err
	}
	*slot = t
	return t, nil
}

// send writes a local value's metadata to the readers' ring and sends its
// data to each reader. A failed value (or one the communicator cannot
// move) travels as an error instead, and no data follows.
func (l *loop) send(ctx context.Context, exec uint64, s *sendSpec) error {
	var t0 time.Time
	if l.prof != nil {
		t0 = time.Now()
	}
	w := l.writers[s.Write]
	v := l.locals[s.Local]
	info := v.err
	var t *tensor.Tensor
	if info == nil {
		t, _ = v.v.Interface().(*tensor.Tensor)
		if t == nil {
			info = sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s: a nil *tensor.Tensor on an NCCL edge", s.Name))
		} else if err := l.checkDevice(s.Comm, t); err != nil {
			info = sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s: %v", s.Name, err))
		}
	}
	if info != nil {
		return writeError(ctx, w, info)
	}
	m := t.Meta()
	buf, err := w.Reserve(ctx, msgHdr+tensor.MetaSize(len(m.Shape)))
	if err != nil {
		return err
	}
	putHeader(buf, tagTensor)
	tensor.AppendMeta(buf[msgHdr:msgHdr], m)
	if err := w.Commit(channel.KindData); err != nil {
		return err
	}
	for _, peer := range s.Peers {
		if err := l.comms[s.Comm].Send(ctx, t, peer, l.stream(s.Comm)); err != nil {
			return l.commErr(ctx, s.Name, err)
		}
	}
	if l.prof != nil {
		l.prof.add(exec, s.Name, "SEND", t0)
	}
	return nil
}

// recv reads a value's metadata and receives its data into the step's
// tensor (see reuse).
func (l *loop) recv(ctx context.Context, exec uint64, idx int) error {
	s := &l.spec.Recvs[idx]
	var t0 time.Time
	if l.prof != nil {
		t0 = time.Now()
	}
	data, err := l.read(ctx, s.Read)
	if err != nil {
		return err
	}
	switch {
	case len(data) < msgHdr:
		return fmt.Errorf("%s: a message of %d bytes on an NCCL edge's channel", s.Name, len(data))
	case data[0] == tagError:
		l.locals[s.Local] = value{err: decodeErrorInfo(data[msgHdr:])}
		return nil
	case data[0] != tagTensor:
		return fmt.Errorf("%s: a message with tag %d on an NCCL edge's channel", s.Name, data[0])
	}
	m, _, err := tensor.ParseMeta(data[msgHdr:])
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	t, err := reuse(&l.recvBufs[idx], l.deviceFor(s.Comm, m.Device), m.DType, m.Shape)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	if err := l.comms[s.Comm].Recv(ctx, t, s.Peer, l.stream(s.Comm)); err != nil {
		return l.commErr(ctx, s.Name, err)
	}
	l.locals[s.Local] = value{v: reflect.ValueOf(t)}
	if l.prof != nil {
		l.prof.add(exec, s.Name, "RECV", t0)
	}
	return nil
}

// collective runs a collective step. The participants first agree (a
// one-element max-allreduce) on whether any of them lacks a usable input,
// so that they all run it or all skip it.
func (l *loop) collective(ctx context.Context, exec uint64, idx int) error {
	s := &l.spec.Colls[idx]
	var t0 time.Time
	if l.prof != nil {
		t0 = time.Now()
	}
	comm := l.comms[s.Comm]
	in := l.locals[s.In]
	own := in.err
	var t *tensor.Tensor
	if own == nil {
		t, _ = in.v.Interface().(*tensor.Tensor)
		if msg := l.collCheck(s, t); msg != "" {
			own = sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, s.Name+": "+msg)
		}
	}
	failedRank, err := l.agree(ctx, s.Comm, own != nil)
	if err != nil {
		return l.commErr(ctx, s.Name, err)
	}
	if failedRank >= 0 {
		if own == nil {
			own = sysError(rpc.ErrorKind_ERROR_APPLICATION, fmt.Sprintf("%s was skipped: the input of participant %d failed", s.Name, failedRank))
		}
		l.locals[s.Out] = value{err: own}
		return nil
	}
	shape := t.Shape()
	switch collKind(s.Kind) {
	case collAllGather:
		shape[0] *= comm.Size()
	case collReduceScatter:
		shape[0] /= comm.Size()
	}
	out, err := reuse(&l.collBufs[idx], l.deviceFor(s.Comm, t.Device()), t.DType(), shape)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	st := l.stream(s.Comm)
	switch collKind(s.Kind) {
	case collAllReduce:
		err = comm.AllReduce(ctx, t, out, nccl.ReduceOp(s.Op), st)
	case collAllGather:
		err = comm.AllGather(ctx, t, out, st)
	case collReduceScatter:
		err = comm.ReduceScatter(ctx, t, out, nccl.ReduceOp(s.Op), st)
	}
	if err != nil {
		return l.commErr(ctx, s.Name, err)
	}
	l.locals[s.Out] = value{v: reflect.ValueOf(out)}
	if l.prof != nil {
		l.prof.add(exec, s.Name, collKind(s.Kind).String(), t0)
	}
	return nil
}

// collCheck says what is wrong with this rank's input of a collective, or
// "".
func (l *loop) collCheck(s *collSpec, t *tensor.Tensor) string {
	if t == nil {
		return "a nil *tensor.Tensor input"
	}
	if err := l.checkDevice(s.Comm, t); err != nil {
		return err.Error()
	}
	k := collKind(s.Kind)
	if k != collAllReduce && t.NDim() == 0 {
		return fmt.Sprintf("%s needs a tensor of at least one dimension, got %s", k, t)
	}
	if k == collReduceScatter && t.Dim(0)%l.comms[s.Comm].Size() != 0 {
		return fmt.Sprintf("the first dimension of %s does not divide by the %d participants", t, l.comms[s.Comm].Size())
	}
	return ""
}

// agree tells every rank whether any rank failed: the highest failed rank,
// or -1.
func (l *loop) agree(ctx context.Context, c int, failed bool) (int, error) {
	if l.hostFlags[c] == nil {
		l.hostFlags[c] = tensor.Zeros(tensor.Int32, 1)
	}
	host := l.hostFlags[c]
	hv, _ := tensor.As[int32](host)
	hv[0] = 0
	if failed {
		hv[0] = int32(l.comms[c].Rank() + 1)
	}
	t := host
	if dc, ok := l.comms[c].(nccl.DeviceCommunicator); ok {
		if l.flags[c] == nil {
			f, err := tensor.Empty(tensor.Int32, tensor.CUDA(dc.Device()), 1)
			if err != nil {
				return -1, err
			}
			l.flags[c] = f
		}
		t = l.flags[c]
		if err := t.CopyFrom(host); err != nil {
			return -1, err
		}
	}
	if err := l.comms[c].AllReduce(ctx, t, t, nccl.Max, l.stream(c)); err != nil {
		return -1, err
	}
	if t != host {
		if err := host.CopyFrom(t); err != nil {
			return -1, err
		}
	}
	return int(hv[0]) - 1, nil
}

// commErr reports a communicator's failure: a stop when the loop is being
// torn down, else the graph's end.
func (l *loop) commErr(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return errStopped
	}
	return fmt.Errorf("%s: %w", name, err)
}

// closeComms releases the loop's flags and received tensors (startLoopFn
// closes the communicators themselves).
func (l *loop) closeComms() {
	for _, ts := range [][]*tensor.Tensor{l.flags, l.recvBufs, l.collBufs} {
		for _, t := range ts {
			t.Free()
		}
	}
}
