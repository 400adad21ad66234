// Command allreduce trains a linear model with data-parallel SGD: each of
// several trainer actors computes the gradient on its own shard of the
// data, a compiled graph averages the gradients with an AllReduce over a
// communicator (package nccl), and every trainer applies the same update,
// so the replicas stay identical without any parameter server.
//
//	go run ./examples/allreduce                      # 4 trainers, 300 steps, the CPU communicator
//	go run ./examples/allreduce -trainers 2 -steps 50
//
// The gradients never pass through the driver: it sends each step's number
// and reads back the loss. With GPUs, the same graph compiled without
// dag.Communicator(nccl.CPU) runs on NCCL over device tensors.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/dag"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// truth is the model the data comes from: y = x·w + noise.
func truth(dim int) []float32 {
	w := make([]float32, dim)
	for i := range w {
		w[i] = float32(i+1) / float32(dim)
	}
	return w
}

// Trainer holds one shard of the data and one replica of the weights.
type Trainer struct {
	x    [][]float32
	y    []float32
	w    []float32
	grad []float32 // the gradient tensor's storage, reused every step
}

func newTrainer(_ context.Context, rank, rows, dim int) (*Trainer, error) {
	r := rand.New(rand.NewPCG(uint64(rank), 99))
	w := truth(dim)
	t := &Trainer{w: make([]float32, dim), grad: make([]float32, dim+1)}
	for range rows {
		x := make([]float32, dim)
		y := float32(0)
		for j := range x {
			x[j] = float32(r.NormFloat64())
			y += x[j] * w[j]
		}
		t.x = append(t.x, x)
		t.y = append(t.y, y+float32(0.01*r.NormFloat64()))
	}
	return t, nil
}

// Grad returns the mean-squared-error gradient on this shard, with the
// shard's loss as the last element.
func (t *Trainer) Grad(_ context.Context, step int) (*tensor.Tensor, error) {
	clear(t.grad)
	dim := len(t.w)
	for i, x := range t.x {
		pred := float32(0)
		for j := range x {
			pred += x[j] * t.w[j]
		}
		e := pred - t.y[i]
		for j := range x {
			t.grad[j] += 2 * e * x[j] / float32(len(t.x))
		}
		t.grad[dim] += e * e / float32(len(t.x))
	}
	return tensor.FromSlice(t.grad)
}

// Apply takes a step along the averaged gradient and returns the averaged
// loss (before the step) and the first weight, to check that the replicas
// agree.
func (t *Trainer) Apply(_ context.Context, avg *tensor.Tensor, lr float32) ([]float32, error) {
	g, err := tensor.As[float32](avg)
	if err != nil {
		return nil, err
	}
	for j := range t.w {
		t.w[j] -= lr * g[j]
	}
	return []float32{g[len(t.w)], t.w[0]}, nil
}

// Weights returns the replica's weights.
func (t *Trainer) Weights(context.Context) ([]float32, error) {
	return append([]float32{}, t.w...), nil
}

var trainerClass = actor.Register("examples.Trainer", newTrainer)

func main() {
	rt, err := core.Init(context.Background(), core.NumCPUs(4)) // in a worker process: serves, never returns
	check(err)
	defer rt.Shutdown()
	flag.CommandLine.Init("allreduce", flag.ContinueOnError)
	trainers := flag.Int("trainers", 4, "trainer actors (ranks of the communicator)")
	steps := flag.Int("steps", 300, "SGD steps")
	rows := flag.Int("rows", 2000, "rows of data per trainer")
	dim := flag.Int("dim", 32, "features")
	lr := flag.Float64("lr", 0.05, "learning rate")
	check(flag.CommandLine.Parse(os.Args[1:]))
	if *trainers < 1 || *steps < 1 || *rows < 1 || *dim < 1 {
		check(fmt.Errorf("-trainers, -steps, -rows and -dim must be at least 1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	hs := make([]*actor.Handle, *trainers)
	for i := range hs {
		hs[i], err = trainerClass.Remote(rt, i, *rows, *dim)
		check(err)
		defer actor.Kill(hs[i], true)
	}
	// One step: every trainer's gradient, averaged by an AllReduce, then
	// applied by every trainer.
	in := dag.Input()
	grads := make([]dag.Node, len(hs))
	for i, h := range hs {
		grads[i] = dag.Bind(h, "Grad", in)
	}
	avg := dag.AllReduce(grads...).WithOp(nccl.Avg)
	outs := make([]dag.Node, len(hs))
	for i, h := range hs {
		outs[i] = dag.Bind(h, "Apply", avg.Output(i), float32(*lr))
	}
	g, err := dag.Compile(ctx, dag.MultiOutput(outs...), dag.Communicator(nccl.CPU))
	check(err)
	defer g.Teardown()
	fmt.Printf("allreduce: %d trainers × %d rows × %d features, AllReduce(avg) on the %s communicator\n",
		*trainers, *rows, *dim, nccl.CPU.Name())

	start := time.Now()
	agree := true
	var loss float32
	for step := range *steps {
		f, err := g.Execute(ctx, step)
		check(err)
		res, err := dag.Get[[]any](ctx, f)
		check(err)
		first := res[0].([]float32)
		for _, r := range res[1:] {
			agree = agree && r.([]float32)[1] == first[1]
		}
		loss = first[0]
		if step == 0 || (step+1)%(max(*steps/4, 1)) == 0 {
			fmt.Printf("step %4d: loss %.6f\n", step+1, loss)
		}
	}
	took := time.Since(start)
	w, err := core.Get[[]float32](ctx, hs[0].Call("Weights"))
	check(err)
	worst := 0.0
	for j, want := range truth(*dim) {
		worst = max(worst, math.Abs(float64(w[j]-want)))
	}
	fmt.Printf("%d steps in %v (%.0f µs a step)\n", *steps, took.Round(time.Millisecond), float64(took.Microseconds())/float64(*steps))
	fmt.Printf("replicas agree: %v\n", agree)
	fmt.Printf("largest weight error: %.4f\n", worst)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "allreduce:", err)
		os.Exit(1)
	}
}
