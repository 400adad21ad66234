// Command mapreduce counts words with goray tasks, map-reduce style.
//
//	go run ./examples/mapreduce                              # 400k words, 8 maps, 4 reduces
//	go run ./examples/mapreduce -words 2000000 -maps 16 -reduces 8
//
// The driver generates a text (word frequencies follow Zipf's law), splits it
// into -maps chunks and Puts each chunk into the object store once. A map task
// counts the words of its chunk and splits the counts into -reduces partitions
// by a hash of the word; it Puts each partition itself and returns their refs
// (refs inside a value: the driver and the reducers borrow the objects from
// the worker that owns them). Reduce task j gets partition j of every map task
// as ref arguments and merges them. The driver prints the top 10 words and
// checks every count against a direct count of its own.
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/goray/goray/core"
)

var (
	// mapChunk counts the words of chunk into r partitions and returns a ref
	// to each partition.
	mapChunk = core.Register("mapreduce.map", func(ctx context.Context, chunk []byte, r int) ([]*core.ObjectRef, error) {
		parts := make([]map[string]int, r)
		for i := range parts {
			parts[i] = map[string]int{}
		}
		for _, w := range bytes.Fields(chunk) { // chunk is read in place, from shared memory
			parts[partition(w, r)][string(w)]++
		}
		refs := make([]*core.ObjectRef, r)
		for i, p := range parts {
			ref, err := core.Put(core.RuntimeFrom(ctx), p)
			if err != nil {
				return nil, err
			}
			refs[i] = ref
		}
		return refs, nil
	})

	// reduce merges one partition of every map task's counts.
	reduce = core.Register("mapreduce.reduce", func(_ context.Context, parts ...map[string]int) (map[string]int, error) {
		total := map[string]int{}
		for _, p := range parts {
			for w, n := range p {
				total[w] += n
			}
		}
		return total, nil
	})
)

// partition is the reducer of word w.
func partition(w []byte, r int) int {
	h := fnv.New32a()
	h.Write(w)
	return int(h.Sum32() % uint32(r))
}

// text generates n words: common English words first, then made-up ones,
// drawn with Zipf-distributed ranks.
func text(n int, seed uint64) []byte {
	vocab := strings.Fields(`the of and to in a is that for it as was with be by on not he this are
		or his from at which but have an they you were her she there been one all we their`)
	syl := []string{"ka", "lo", "mi", "ne", "ru", "so", "ta", "vi"}
	for i := 0; len(vocab) < 20000; i++ {
		w := ""
		for j := i + 8; j > 0; j /= 8 {
			w += syl[j%8]
		}
		vocab = append(vocab, w)
	}
	r := rand.New(rand.NewPCG(seed, 0))
	z := rand.NewZipf(r, 1.1, 2, uint64(len(vocab)-1))
	var b bytes.Buffer
	for i := range n {
		if i > 0 {
			b.WriteByte(" \n"[min(1, r.IntN(12)/11)]) // a line break now and then
		}
		b.WriteString(vocab[z.Uint64()])
	}
	return b.Bytes()
}

// rt is the driver's runtime.
var rt *core.Runtime

func main() {
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4)) // in a worker process: serves tasks, never returns
	check(err)
	defer rt.Shutdown()
	flag.CommandLine.Init("mapreduce", flag.ContinueOnError) // a bad flag goes through check too
	nWords := flag.Int("words", 400_000, "words in the generated text")
	nMaps := flag.Int("maps", 8, "map tasks (chunks)")
	nReduces := flag.Int("reduces", 4, "reduce tasks (partitions)")
	seed := flag.Uint64("seed", 1, "seed of the generated text")
	check(flag.CommandLine.Parse(os.Args[1:]))
	if *nWords < 1 || *nMaps < 1 || *nReduces < 1 {
		check(fmt.Errorf("-words, -maps and -reduces must be at least 1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	data := text(*nWords, *seed)
	start := time.Now()

	// Split at word boundaries; Put each chunk once; one map task per chunk.
	var mapped []*core.ObjectRef
	for i, lo := 0, 0; i < *nMaps; i++ {
		hi := len(data) * (i + 1) / *nMaps
		for hi < len(data) && data[hi] != ' ' && data[hi] != '\n' {
			hi++
		}
		hi = max(hi, lo)
		chunk, err := core.Put(rt, data[lo:hi])
		check(err)
		mapped = append(mapped, mapChunk.Remote(rt, chunk, *nReduces))
		lo = hi
	}

	// parts[i][j] is map task i's partition j.
	parts, err := core.GetAll[[]*core.ObjectRef](ctx, mapped)
	check(err)
	var reduced []*core.ObjectRef
	for j := range *nReduces {
		var args []any
		for i := range parts {
			args = append(args, parts[i][j])
		}
		reduced = append(reduced, reduce.Remote(rt, args...))
	}
	results, err := core.GetAll[map[string]int](ctx, reduced)
	check(err)
	counts := map[string]int{}
	for _, m := range results {
		maps.Copy(counts, m) // partitions hold disjoint words
	}
	elapsed := time.Since(start)

	type wc struct {
		word string
		n    int
	}
	var top []wc
	total := 0
	for w, n := range counts {
		top = append(top, wc{w, n})
		total += n
	}
	slices.SortFunc(top, func(a, b wc) int { return cmp.Or(b.n-a.n, strings.Compare(a.word, b.word)) })
	fmt.Printf("mapreduce: %d words (%d KiB) in %d chunks, %d map and %d reduce tasks: %v\n",
		*nWords, len(data)>>10, *nMaps, *nMaps, *nReduces, elapsed.Round(time.Millisecond))
	fmt.Println("top 10 words:")
	for i, e := range top[:min(10, len(top))] {
		fmt.Printf("%3d. %-6s %7d  %5.2f%%\n", i+1, e.word, e.n, 100*float64(e.n)/float64(total))
	}

	// Check against a direct count in the driver.
	direct := map[string]int{}
	for _, w := range bytes.Fields(data) {
		direct[string(w)]++
	}
	if total != *nWords || !maps.Equal(counts, direct) {
		check(fmt.Errorf("counts differ from a direct count: %d words in %d distinct, want %d in %d",
			total, len(counts), *nWords, len(direct)))
	}
	fmt.Printf("total ok: %d words, %d distinct, every count equal to a direct count\n", total, len(counts))
}

// check ends the program on an error: one line, exit code 1, and the cluster
// shut down first (os.Exit skips deferred calls).
func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mapreduce:", err)
		if rt != nil {
			rt.Shutdown()
		}
		os.Exit(1)
	}
}
