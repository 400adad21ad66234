// Command pipeline is an inference-style pipeline of three actors,
// Tokenize → Embed → Classify, compiled once into a goray graph (package dag)
// and executed again and again: values move between the actors' processes
// through shared-memory rings, with no RPC per execution.
//
//	go run ./examples/pipeline                 # 2000 executions
//	go run ./examples/pipeline -n 10000 -inflight 16
//
// It prints the latency percentiles of executions run one at a time, the
// throughput with -inflight executions in flight, and, for comparison, the
// same pipeline as classic actor calls chained through refs. The "model" is
// synthetic and pure Go: sentences drawn from four topics, random word
// embeddings, and a nearest-centroid classifier (about 99% right: a short
// sentence of filler words can fool it).
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/dag"
)

// The synthetic data: four topics of eight words each, and filler words.
var (
	labels = []string{"sports", "politics", "tech", "food"}
	topics = [][]string{
		{"goal", "match", "team", "coach", "league", "score", "striker", "season"},
		{"vote", "senate", "policy", "election", "minister", "law", "party", "debate"},
		{"chip", "software", "cloud", "robot", "startup", "code", "network", "data"},
		{"recipe", "bread", "cheese", "spice", "oven", "soup", "market", "chef"},
	}
	filler = []string{"the", "a", "of", "and", "in", "this", "new", "big", "was", "on"}
)

const vocab = 4096 // rows of the embedding table; words are hashed to rows

// Tokenizer maps each word to its row of the embedding table.
type Tokenizer struct{}

func (Tokenizer) Tokenize(_ context.Context, text string) ([]int32, error) {
	words := strings.Fields(strings.ToLower(text))
	ids := make([]int32, len(words))
	for i, w := range words {
		h := fnv.New32a()
		h.Write([]byte(w))
		ids[i] = int32(h.Sum32() % vocab)
	}
	return ids, nil
}

// Embedder holds a random embedding table, the same in every process for
// the same seed.
type Embedder struct{ table [][]float32 }

func newEmbedder(dim int, seed uint64) *Embedder {
	r := rand.New(rand.NewPCG(seed, 1))
	e := &Embedder{table: make([][]float32, vocab)}
	for i := range e.table {
		e.table[i] = make([]float32, dim)
		for j := range e.table[i] {
			e.table[i][j] = float32(r.NormFloat64())
		}
	}
	return e
}

// Embed returns the mean of the tokens' embeddings.
func (e *Embedder) Embed(_ context.Context, ids []int32) ([]float32, error) {
	out := make([]float32, len(e.table[0]))
	for _, id := range ids {
		for j, x := range e.table[id] {
			out[j] += x / float32(len(ids))
		}
	}
	return out, nil
}

type Prediction struct {
	Label string
	Score float32 // cosine similarity to the label's centroid
}

// Classifier is a nearest-centroid classifier: one centroid per topic, the
// mean embedding of its words.
type Classifier struct{ centroids [][]float32 }

func (c *Classifier) Classify(_ context.Context, v []float32) (Prediction, error) {
	best := Prediction{Score: -2}
	for i, cen := range c.centroids {
		var dot, nv, nc float64
		for j := range v {
			dot += float64(v[j] * cen[j])
			nv += float64(v[j] * v[j])
			nc += float64(cen[j] * cen[j])
		}
		if s := float32(dot / math.Sqrt(nv*nc)); s > best.Score {
			best = Prediction{Label: labels[i], Score: s}
		}
	}
	return best, nil
}

var (
	tokenizerClass = actor.Register("pipeline.Tokenizer", func(context.Context) (*Tokenizer, error) {
		return &Tokenizer{}, nil
	})
	embedderClass = actor.Register("pipeline.Embedder", func(_ context.Context, dim int, seed uint64) (*Embedder, error) {
		return newEmbedder(dim, seed), nil
	})
	classifierClass = actor.Register("pipeline.Classifier", func(ctx context.Context, dim int, seed uint64) (*Classifier, error) {
		e, c := newEmbedder(dim, seed), &Classifier{}
		for _, words := range topics {
			ids, _ := Tokenizer{}.Tokenize(ctx, strings.Join(words, " "))
			cen, _ := e.Embed(ctx, ids)
			c.centroids = append(c.centroids, cen)
		}
		return c, nil
	})
)

// rt is the driver's runtime.
var rt *core.Runtime

func main() {
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4)) // in a worker process: serves tasks, never returns
	check(err)
	defer rt.Shutdown()
	flag.CommandLine.Init("pipeline", flag.ContinueOnError) // a bad flag goes through check too
	n := flag.Int("n", 2000, "executions per measurement")
	inflight := flag.Int("inflight", 8, "executions in flight in the pipelined run (MaxInflight)")
	dim := flag.Int("dim", 64, "embedding dimension")
	check(flag.CommandLine.Parse(os.Args[1:]))
	if *n < 1 || *inflight < 1 {
		check(fmt.Errorf("-n and -inflight must be at least 1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Synthetic sentences: two thirds topic words, one third filler.
	r := rand.New(rand.NewPCG(7, 7))
	texts, want := make([]string, 256), make([]string, 256)
	for i := range texts {
		t, ws := r.IntN(len(labels)), make([]string, 6+r.IntN(10))
		for j := range ws {
			ws[j] = filler[r.IntN(len(filler))]
			if r.IntN(3) < 2 {
				ws[j] = topics[t][r.IntN(8)]
			}
		}
		texts[i], want[i] = strings.Join(ws, " "), labels[t]
	}

	tok, err := tokenizerClass.Remote(rt)
	check(err)
	emb, err := embedderClass.Remote(rt, *dim, uint64(42))
	check(err)
	cls, err := classifierClass.Remote(rt, *dim, uint64(42))
	check(err)

	in := dag.Input()
	out := dag.Bind(cls, "Classify", dag.Bind(emb, "Embed", dag.Bind(tok, "Tokenize", in)))
	g, err := dag.Compile(ctx, out, dag.MaxInflight(*inflight))
	check(err)
	defer g.Teardown()
	fmt.Printf("pipeline: Tokenize → Embed → Classify (3 actors, dim %d), compiled once; %d executions each\n", *dim, *n)

	// One at a time: the latency of an execution (after a short warm-up).
	hist := hdrhistogram.New(1, int64(time.Minute), 3)
	correct, labelOf := 0, make([]string, len(texts))
	for i := -min(*n, 100); i < *n; i++ {
		k := (i + 256) % 256
		start := time.Now()
		f, err := g.Execute(ctx, texts[k])
		check(err)
		p, err := dag.Get[Prediction](ctx, f)
		check(err)
		labelOf[k] = p.Label
		if i >= 0 {
			hist.RecordValue(int64(time.Since(start)))
			if p.Label == want[k] {
				correct++
			}
		}
	}
	fmt.Printf("compiled, one at a time: %s; accuracy %d/%d\n", percentiles(hist), correct, *n)

	// Pipelined: keep -inflight executions in flight, so that the three
	// actors work on different executions at once. Results come back in order.
	start := time.Now()
	var queue []*dag.Future
	for i, done := 0, 0; done < *n; {
		if i < *n && len(queue) < *inflight {
			f, err := g.Execute(ctx, texts[i%256])
			check(err)
			queue = append(queue, f)
			i++
			continue
		}
		p, err := dag.Get[Prediction](ctx, queue[0])
		check(err)
		if p.Label != labelOf[done%256] {
			check(fmt.Errorf("execution %d in flight gave %q, one at a time %q", done, p.Label, labelOf[done%256]))
		}
		queue, done = queue[1:], done+1
	}
	el := time.Since(start)
	fmt.Printf("compiled, %d in flight: %.0f executions/s (one at a time: %.0f/s)\n",
		*inflight, float64(*n)/el.Seconds(), 1e9/hist.Mean())

	// The same pipeline as classic actor calls, with refs as arguments: a
	// submission and a reply per call. (Teardown stops the graph's loops;
	// the actors stay alive.)
	check(g.Teardown())
	classic := hdrhistogram.New(1, int64(time.Minute), 3)
	for i := range *n {
		start := time.Now()
		ref := cls.Call("Classify", emb.Call("Embed", tok.Call("Tokenize", texts[i%256])))
		_, err := core.Get[Prediction](ctx, ref)
		check(err)
		classic.RecordValue(int64(time.Since(start)))
	}
	fmt.Printf("classic actor calls, one at a time: %s\n", percentiles(classic))
	fmt.Printf("compiled vs classic: %.1f× faster (p50)\n",
		float64(classic.ValueAtQuantile(50))/float64(hist.ValueAtQuantile(50)))
}

// percentiles formats a histogram of nanoseconds.
func percentiles(h *hdrhistogram.Histogram) string {
	us := func(ns int64) string { return fmt.Sprintf("%.1fµs", float64(ns)/1e3) }
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s",
		us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(90)), us(h.ValueAtQuantile(99)), us(h.Max()))
}

// check ends the program on an error: one line, exit code 1, and the cluster
// shut down first (os.Exit skips deferred calls).
func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		if rt != nil {
			rt.Shutdown()
		}
		os.Exit(1)
	}
}
