package worker

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/rpc"
)

func sampleSpecs() []*rpc.TaskSpec {
	return []*rpc.TaskSpec{
		{},
		{TaskId: bytes.Repeat([]byte{7}, 24), Function: "bench.Actor", Method: "Noop", ActorId: bytes.Repeat([]byte{9}, 16),
			NumReturns: 1, OwnerAddress: "unix:///tmp/goray/w1.sock", Attempt: 2},
		{TaskId: []byte{1, 2, 3}, Function: "pkg.Fn", Name: "named ✓", Generator: true, NumReturns: 0, Attempt: 1 << 31,
			Args: []*rpc.Arg{
				{Value: []byte("inline")},
				{ObjectId: bytes.Repeat([]byte{3}, 28), InStore: true},
				{Value: bytes.Repeat([]byte{0xff}, 300), Nested: []*rpc.NestedRef{
					{ObjectId: []byte{1}, OwnerAddress: "owner-a"}, {ObjectId: []byte{2}, OwnerAddress: "owner-b"}}},
				{},
			}},
	}
}

func sampleReplies() []*rpc.RingReply {
	return []*rpc.RingReply{
		{Kind: &rpc.RingReply_Reply{Reply: &rpc.TaskReply{}}},
		{Kind: &rpc.RingReply_Reply{Reply: &rpc.TaskReply{TaskId: []byte{1, 2}, Returns: []*rpc.ReturnObject{
			{ObjectId: []byte{5, 5}, Value: []byte{0x18, 0x2a}},
			{ObjectId: []byte{6}, InStore: true, Nested: []*rpc.NestedRef{{ObjectId: []byte{8}, OwnerAddress: "me"}}},
		}}}},
		{Kind: &rpc.RingReply_Reply{Reply: &rpc.TaskReply{TaskId: []byte{3}, GeneratorItems: 12}}},
		{Kind: &rpc.RingReply_Item{Item: &rpc.GeneratorItem{TaskId: []byte{4}, Index: 3, Object: &rpc.ReturnObject{ObjectId: []byte{9}, Value: []byte("v")}}}},
		{Kind: &rpc.RingReply_Item{Item: &rpc.GeneratorItem{TaskId: []byte{4}, Index: 4}}},
		// With an ErrorInfo: these go as protobuf.
		{Kind: &rpc.RingReply_Reply{Reply: &rpc.TaskReply{TaskId: []byte{1}, Error: &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_SYSTEM, Message: "boom"}}}},
		{Kind: &rpc.RingReply_Reply{Reply: &rpc.TaskReply{TaskId: []byte{1}, Returns: []*rpc.ReturnObject{{ObjectId: []byte{2}, Error: &rpc.ErrorInfo{Message: "x"}}}}}},
		{Kind: &rpc.RingReply_Item{Item: &rpc.GeneratorItem{TaskId: []byte{4}, Object: &rpc.ReturnObject{Error: &rpc.ErrorInfo{Message: "y"}}}}},
	}
}

// TestRingCodecRoundTrip sends every sample through a ring with writeRing
// and reads it back: what arrives equals what was sent, flat where it can
// be and protobuf where it cannot.
func TestRingCodecRoundTrip(t *testing.T) {
	rg, err := channel.NewInProc(1, channel.Slots(4), channel.SlotSize(4096))
	require.NoError(t, err)
	defer rg.Close()
	w, err := rg.Writer()
	require.NoError(t, err)
	r, err := rg.Reader(0)
	require.NoError(t, err)
	ctx := context.Background()
	var in interner
	roundTrip := func(m proto.Message, decode func([]byte) (proto.Message, error)) []byte {
		require.NoError(t, writeRing(ctx, w, m))
		msg, err := r.Read(ctx)
		require.NoError(t, err)
		data := bytes.Clone(msg.Data)
		got, err := decode(msg.Data)
		msg.Release()
		require.NoError(t, err)
		require.True(t, proto.Equal(m, got), "sent %v\ngot %v", m, got)
		return data
	}
	for _, s := range sampleSpecs() {
		data := roundTrip(&rpc.RingRequest{Kind: &rpc.RingRequest_Task{Task: s}}, func(b []byte) (proto.Message, error) {
			var req rpc.RingRequest
			return &req, unmarshalRequest(b, &req, &in)
		})
		require.Equal(t, byte(ringFast), data[0], "a task spec always goes flat")
	}
	for _, s := range sampleReplies() {
		data := roundTrip(s, func(b []byte) (proto.Message, error) {
			var rep rpc.RingReply
			return &rep, unmarshalReply(b, &rep, &in)
		})
		hasErr := strings.Contains(s.String(), "message:")
		require.Equal(t, !hasErr, data[0] == ringFast, "flat unless it holds an ErrorInfo: %v", s)
	}
	// A protobuf request (what an older writer sends) still reads.
	pb, err := proto.Marshal(&rpc.RingRequest{Kind: &rpc.RingRequest_Task{Task: sampleSpecs()[1]}})
	require.NoError(t, err)
	var req rpc.RingRequest
	require.NoError(t, unmarshalRequest(pb, &req, &in))
	require.True(t, proto.Equal(sampleSpecs()[1], req.GetTask()))
}

// TestRingCodecDecodedOwnsBytes: a decoded message shares nothing with the
// ring slot, which the next message overwrites.
func TestRingCodecDecodedOwnsBytes(t *testing.T) {
	rep := sampleReplies()[1]
	data := appendReply([]byte{ringFast, ringKindReply}, rep.GetReply())
	var got rpc.RingReply
	require.NoError(t, unmarshalReply(data, &got, nil))
	for i := range data {
		data[i] = 0xAA
	}
	require.True(t, proto.Equal(rep, &got))
}

// TestRingCodecErrors: truncated, overlong and malformed flat messages are
// errors that say what is wrong, never a panic or a huge allocation.
func TestRingCodecErrors(t *testing.T) {
	spec := appendSpec([]byte{ringFast, ringKindTask}, sampleSpecs()[2])
	var req rpc.RingRequest
	for n := 1; n < len(spec); n++ { // (no bytes at all: an empty protobuf message)
		require.Error(t, unmarshalRequest(spec[:n:n], &req, nil), "truncated at %d", n)
	}
	err := unmarshalRequest(append(bytes.Clone(spec), 0), &req, nil)
	require.ErrorContains(t, err, "1 bytes after the end")
	err = unmarshalRequest([]byte{ringFast, ringKindReply}, &req, nil)
	require.ErrorContains(t, err, "want 1 (a task)")
	var rep rpc.RingReply
	err = unmarshalReply([]byte{ringFast, 9}, &rep, nil)
	require.ErrorContains(t, err, "kind 9")
	// A count of 2^62 returns in a short message.
	huge := []byte{ringFast, ringKindReply, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40}
	err = unmarshalReply(huge, &rep, nil)
	require.ErrorContains(t, err, "past the message's end")
	bad := appendSpec([]byte{ringFast, ringKindTask}, &rpc.TaskSpec{Function: "\xff"})
	require.ErrorContains(t, unmarshalRequest(bad, &req, nil), "not valid UTF-8")
	flag := appendItem([]byte{ringFast, ringKindItem}, &rpc.GeneratorItem{})
	flag[len(flag)-1] = 2
	require.ErrorContains(t, unmarshalReply(flag, &rep, nil), "flag byte 0x2")
}

func TestInterner(t *testing.T) {
	var in interner
	a := in.get([]byte("owner"))
	b := in.get([]byte("owner"))
	require.Equal(t, "owner", a)
	require.Same(t, unsafe.StringData(a), unsafe.StringData(b), "the same string comes back")
	for i := range internMax + 10 {
		in.get([]byte(strings.Repeat("x", i%300+1)))
	}
	require.LessOrEqual(t, len(in.m), internMax)
}

// FuzzRingDecode: any bytes decode to a message or an error; a message
// that decodes encodes back to bytes that decode to the same message.
func FuzzRingDecode(f *testing.F) {
	for _, s := range sampleSpecs() {
		f.Add(appendSpec([]byte{ringFast, ringKindTask}, s))
	}
	for _, r := range sampleReplies() {
		switch k := r.Kind.(type) {
		case *rpc.RingReply_Reply:
			if replyFits(k.Reply) {
				f.Add(appendReply([]byte{ringFast, ringKindReply}, k.Reply))
			}
		case *rpc.RingReply_Item:
			if k.Item.Object == nil || k.Item.Object.Error == nil {
				f.Add(appendItem([]byte{ringFast, ringKindItem}, k.Item))
			}
		}
	}
	f.Add([]byte{ringFast})
	f.Fuzz(func(t *testing.T, data []byte) {
		var in interner
		var req rpc.RingRequest
		if unmarshalRequest(data, &req, &in) == nil && len(data) > 0 && data[0] == ringFast {
			again := appendSpec([]byte{ringFast, ringKindTask}, req.GetTask())
			var s sizer
			s.spec(req.GetTask())
			if len(again) != 2+int(s) {
				t.Fatalf("sized %d, wrote %d", 2+int(s), len(again))
			}
			var req2 rpc.RingRequest
			if err := unmarshalRequest(again, &req2, &in); err != nil || !proto.Equal(&req, &req2) {
				t.Fatalf("re-encoded spec: %v\n%v\n%v", err, &req, &req2)
			}
		}
		var rep rpc.RingReply
		if unmarshalReply(data, &rep, &in) == nil && len(data) > 0 && data[0] == ringFast {
			var again []byte
			var s sizer
			switch k := rep.Kind.(type) {
			case *rpc.RingReply_Reply:
				again = appendReply([]byte{ringFast, ringKindReply}, k.Reply)
				s.reply(k.Reply)
			case *rpc.RingReply_Item:
				again = appendItem([]byte{ringFast, ringKindItem}, k.Item)
				s.item(k.Item)
			}
			if len(again) != 2+int(s) {
				t.Fatalf("sized %d, wrote %d", 2+int(s), len(again))
			}
			var rep2 rpc.RingReply
			if err := unmarshalReply(again, &rep2, &in); err != nil || !proto.Equal(&rep, &rep2) {
				t.Fatalf("re-encoded reply: %v\n%v\n%v", err, &rep, &rep2)
			}
		}
	})
}
