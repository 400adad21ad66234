package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// The head's Prometheus metrics (`goray start --head --metrics-port N`):
// read from the GCS and the raylet at each scrape.

var (
	descTasks = prometheus.NewDesc("goray_tasks_total", "Tasks and actor calls finished, by kind (task, actor_call) and state (FINISHED, FAILED).",
		[]string{"kind", "state"}, nil)
	descActors = prometheus.NewDesc("goray_actors", "Actors by state.", []string{"state"}, nil)
	descStore  = prometheus.NewDesc("goray_object_store_bytes", "The node's object store: capacity, used and spilled bytes.",
		[]string{"kind"}, nil)
	descObjects = prometheus.NewDesc("goray_object_store_objects", "Objects in the node's store.", nil, nil)
	descWorkers = prometheus.NewDesc("goray_workers", "Worker processes, by whether they are leased.", []string{"leased"}, nil)
	descDAG     = prometheus.NewDesc("goray_dag_execution_seconds", "Compiled-graph executions: time from Execute to Get.", nil, nil)
)

type clusterCollector struct{ c *clusterClient }

func (cc clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descActors, descStore, descObjects, descWorkers, descDAG} {
		ch <- d
	}
}

func (cc clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := cc.c.gcs.GetMetrics(ctx, &rpc.GetMetricsRequest{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descTasks, err)
		return
	}
	for k, n := range m.Counts {
		kind, state, _ := strings.Cut(k, "/")
		if kind == "dag" {
			continue // graph operations: dag executions have their own metric
		}
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.CounterValue, float64(n), kind, state)
	}
	for _, s := range []string{"PENDING", "ALIVE", "RESTARTING", "DEAD"} {
		ch <- prometheus.MustNewConstMetric(descActors, prometheus.GaugeValue, float64(m.Actors["ACTOR_"+s]), s)
	}
	for _, h := range m.Latencies {
		if h.Name != "dag_execution" {
			continue
		}
		cum := map[float64]uint64{}
		var run uint64
		for i, b := range worker.LatencyBuckets {
			if i < len(h.Buckets) {
				run += h.Buckets[i]
			}
			cum[b] = run
		}
		ch <- prometheus.MustNewConstHistogram(descDAG, h.Count, h.SumSeconds, cum)
	}
	res, err := cc.c.raylet.GetResources(ctx, &rpc.GetResourcesRequest{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descStore, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(res.ObjectStoreCapacity), "capacity")
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(res.ObjectStoreUsed), "used")
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(res.ObjectStoreSpilled), "spilled")
	ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(res.ObjectStoreObjects))
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(res.LeasedWorkers), "true")
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(res.Workers-res.LeasedWorkers), "false")
}

// serveMetrics serves /metrics on 127.0.0.1:port until ctx ends.
func serveMetrics(ctx context.Context, addr string, port int) (stop func(), err error) {
	c, err := dialCluster(ctx, addr)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(clusterCollector{c})
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("metrics: %w (pick another --metrics-port)", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("goray head: metrics:", err)
		}
	}()
	return func() {
		srv.Close()
		<-done
		c.Close()
	}, nil
}
