package core

import (
	"fmt"
	"time"

	"github.com/goray/goray/internal/rpc"
)

// Option configures Init.
type Option interface{ applyInit(*initConfig) }

// TaskOption configures a task (Func.Options).
type TaskOption interface{ applyTask(*taskConfig) }

type initConfig struct {
	address     string
	resources   map[string]float64
	storeMemory int64
	namespace   string
	prestart    int
	idleTimeout time.Duration
	errs        []error
}

type taskConfig struct {
	resources  map[string]float64
	maxRetries int
	retryOn    []error
	name       string
	strategy   SchedulingStrategy
	errs       []error
}

func defaultTaskConfig() taskConfig {
	return taskConfig{resources: map[string]float64{"CPU": 1}, maxRetries: 3}
}

type initFunc func(*initConfig)

func (f initFunc) applyInit(c *initConfig) { f(c) }

type taskFunc func(*taskConfig)

func (f taskFunc) applyTask(c *taskConfig) { f(c) }

// ResourceOption is an amount of resources: for Init, the node's capacity;
// for a task (or an actor), its demand. NumCPUs, NumGPUs, Memory and
// Resources make one.
type ResourceOption struct{ res map[string]float64 }

func (r ResourceOption) applyInit(c *initConfig) {
	if c.resources == nil {
		c.resources = map[string]float64{}
	}
	for k, v := range r.res {
		c.resources[k] = v
	}
}

func (r ResourceOption) applyTask(c *taskConfig) {
	for k, v := range r.res {
		c.resources[k] = v
	}
}

// ResourceDemand returns the amounts this option sets (for package actor).
func (r ResourceOption) ResourceDemand() map[string]float64 { return r.res }

// NumCPUs sets CPUs (fractional amounts allowed: two tasks of 0.5 share
// one CPU). A task's default is 1.
func NumCPUs(n float64) ResourceOption { return ResourceOption{map[string]float64{"CPU": n}} }

// NumGPUs sets GPUs (a fraction below one shares a GPU). Init's default is
// the GPUs NVML finds (package cuda): none without a driver.
func NumGPUs(n float64) ResourceOption { return ResourceOption{map[string]float64{"GPU": n}} }

// Memory sets the bytes of memory a task reserves (scheduling only).
func Memory(bytes int64) ResourceOption {
	return ResourceOption{map[string]float64{"memory": float64(bytes)}}
}

// Resources sets custom resources by name.
func Resources(r map[string]float64) ResourceOption {
	c := make(map[string]float64, len(r))
	for k, v := range r {
		c[k] = v
	}
	return ResourceOption{c}
}

// Address connects Init to a running cluster (another driver's embedded
// cluster, rt.Address(), or later `goray start`) instead of starting one;
// "" starts an embedded cluster. The token is read from GORAY_TOKEN_FILE,
// or from the cluster's SessionDir. The connected driver submits tasks to
// the cluster's workers, which run the binary of the driver that started
// the cluster: it must register the same functions and actor classes.
func Address(addr string) Option { return initFunc(func(c *initConfig) { c.address = addr }) }

// ObjectStoreMemory sets the node's object store capacity (default: 30%
// of RAM, reserved lazily).
func ObjectStoreMemory(bytes int64) Option {
	return initFunc(func(c *initConfig) {
		if bytes <= 0 {
			c.errs = append(c.errs, fmt.Errorf("ObjectStoreMemory(%d): %w: want a positive size in bytes", bytes, ErrBadArgument))
		}
		c.storeMemory = bytes
	})
}

// Namespace sets the job's namespace (for named actors).
func Namespace(ns string) Option { return initFunc(func(c *initConfig) { c.namespace = ns }) }

// PrestartWorkers sets how many worker processes start with the cluster
// and stay when idle (default: the node's CPUs, at most 4).
func PrestartWorkers(n int) Option { return initFunc(func(c *initConfig) { c.prestart = n }) }

// WorkerIdleTimeout sets how long a worker process beyond the prestarted
// ones may stay idle before it is stopped (default 10 s).
func WorkerIdleTimeout(d time.Duration) Option {
	return initFunc(func(c *initConfig) { c.idleTimeout = d })
}

// MaxRetries sets how often a task is retried when its worker dies, or
// when it fails with an error listed in RetryOn (default 3; 0: never).
func MaxRetries(n int) TaskOption {
	return taskFunc(func(c *taskConfig) {
		if n < 0 {
			c.errs = append(c.errs, fmt.Errorf("MaxRetries(%d): %w: want 0 or more", n, ErrBadArgument))
		}
		c.maxRetries = n
	})
}

// RetryOn retries the task (within MaxRetries) when it fails with one of
// errs (errors.Is). Each must be registered with RegisterError so that
// worker processes can recognise it.
func RetryOn(errs ...error) TaskOption {
	return taskFunc(func(c *taskConfig) {
		for _, e := range errs {
			if e == nil || !isRegistered(e) {
				c.errs = append(c.errs, fmt.Errorf("RetryOn(%v): %w: register the error with core.RegisterError (at package level) so workers can match it", e, ErrNotRegistered))
				continue
			}
			c.retryOn = append(c.retryOn, e)
		}
	})
}

// Name names the task (errors, the timeline and the state API show it).
func Name(s string) TaskOption { return taskFunc(func(c *taskConfig) { c.name = s }) }

// SchedulingStrategy says where a task may run.
type SchedulingStrategy struct {
	kind   rpc.Strategy
	nodeID string
	soft   bool
	pg     *PlacementGroupHandle
	bundle int
}

var (
	// Default packs tasks onto nodes with resources free.
	Default = SchedulingStrategy{kind: rpc.Strategy_STRATEGY_DEFAULT}
	// Spread spreads tasks over nodes.
	Spread = SchedulingStrategy{kind: rpc.Strategy_STRATEGY_SPREAD}
)

// NodeAffinity runs the task on the node with the given ID (see
// RuntimeContext.NodeID); soft: elsewhere if that node cannot.
// PlacementGroup runs a task in a bundle of pg (bundle -1: any of them),
// drawing on the resources the group reserved.
func PlacementGroup(pg *PlacementGroupHandle, bundle int) SchedulingStrategy {
	return SchedulingStrategy{kind: rpc.Strategy_STRATEGY_DEFAULT, pg: pg, bundle: bundle}
}

func NodeAffinity(nodeID string, soft bool) SchedulingStrategy {
	return SchedulingStrategy{kind: rpc.Strategy_STRATEGY_NODE_AFFINITY, nodeID: nodeID, soft: soft}
}

// Strategy sets a task's scheduling strategy.
func Strategy(s SchedulingStrategy) TaskOption {
	return taskFunc(func(c *taskConfig) { c.strategy = s })
}
