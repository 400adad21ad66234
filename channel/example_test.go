package channel_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/goray/goray/channel"
)

func ExampleNewInProc() {
	ctx := context.Background()
	r, _ := channel.NewInProc(1, channel.Slots(4))
	defer r.Close()
	w, _ := r.Writer()
	rd, _ := r.Reader(0)

	w.Write(ctx, []byte("step 1 done"))
	w.WriteError(ctx, errors.New("step 2 failed"))
	w.CloseWrite(ctx)

	for {
		m, err := rd.Read(ctx)
		if errors.Is(err, channel.ErrChannelClosed) {
			fmt.Println("end of stream")
			return
		}
		if e := m.Err(); e != nil {
			fmt.Println("error:", e)
		} else {
			fmt.Println("data:", string(m.Data))
		}
		m.Release()
	}
	// Output:
	// data: step 1 done
	// error: step 2 failed
	// end of stream
}

func ExampleRingWriter_Reserve() {
	ctx := context.Background()
	r, _ := channel.NewShm("", 1)
	defer r.Close()
	w, _ := r.Writer()
	rd, _ := r.Reader(0)

	buf, _ := w.Reserve(ctx, 5) // the slot itself: encode in place
	copy(buf, "hello")
	w.Commit(channel.KindData)

	m, _ := rd.Read(ctx) // a read-only view of the same memory
	fmt.Println(string(m.Data))
	m.Release()
	// Output: hello
}

// A TCP channel carries the same messages between nodes: the writer
// listens, each reader dials with its index.
func ExampleListenTCP() {
	ctx := context.Background()
	w, err := channel.ListenTCP("127.0.0.1:0", 1, channel.Token([]byte("cluster secret")))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	rd, err := channel.DialTCP(ctx, w.Addr(), 0, channel.Token([]byte("cluster secret")))
	if err != nil {
		panic(err)
	}
	defer rd.Close()

	w.Write(ctx, []byte("across the network"))
	got, _ := rd.Recv(ctx, nil)
	fmt.Println(string(got))
	// Output: across the network
}

// Another process opens a shared-memory ring by the name its creator
// gives it (here the same process, for the example).
func ExampleOpenShm() {
	ctx := context.Background()
	r, _ := channel.NewShm("example", 1)
	defer r.Close()
	w, _ := r.Writer()
	defer w.Close()

	other, _ := channel.OpenShm(r.Name()) // in the other process
	defer other.Close()
	rd, _ := other.Reader(0)
	defer rd.Close()

	w.Write(ctx, []byte("hello from the writer"))
	m, _ := rd.Read(ctx)
	fmt.Println(string(m.Data))
	m.Release()
	// Output: hello from the writer
}
