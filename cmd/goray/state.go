package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

// ---------------------------------------------------------------- status

func newStatusCmd() *cobra.Command {
	var addrFlag string
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show the cluster's nodes, resources, object store, jobs and actors",
		Example: "  goray status\n  goray status --address 127.0.0.1:6380",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, done, err := openCluster(cmd, addrFlag)
			if err != nil {
				return err
			}
			defer done()
			st, err := fetchStatus(ctx, c)
			if err != nil {
				return err
			}
			printStatus(cmd.OutOrStdout(), c.addr, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	return cmd
}

type clusterStatus struct {
	nodes  []*rpc.NodeInfo
	res    *rpc.GetResourcesReply
	jobs   []*rpc.JobInfo
	actors []*rpc.ActorInfo
}

func fetchStatus(ctx context.Context, c *clusterClient) (*clusterStatus, error) {
	nodes, err := c.gcs.GetNodes(ctx, &rpc.GetNodesRequest{})
	if err != nil {
		return nil, err
	}
	res, err := c.raylet.GetResources(ctx, &rpc.GetResourcesRequest{})
	if err != nil {
		return nil, err
	}
	jobs, err := c.gcs.ListJobs(ctx, &rpc.ListJobsRequest{})
	if err != nil {
		return nil, err
	}
	actors, err := c.gcs.ListActors(ctx, &rpc.ListActorsRequest{})
	if err != nil {
		return nil, err
	}
	return &clusterStatus{nodes: nodes.Nodes, res: res, jobs: jobs.Jobs, actors: actors.Actors}, nil
}

func printStatus(w io.Writer, addr string, st *clusterStatus) {
	fmt.Fprintf(w, "======== goray cluster status: %s ========\n", addr)
	fmt.Fprintf(w, "Nodes\n")
	for _, n := range st.nodes {
		state := "alive"
		if !n.Alive {
			state = "dead"
		}
		fmt.Fprintf(w, "  %s  %s  %s\n", shortHex(n.NodeId), n.RayletAddress, state)
	}
	fmt.Fprintf(w, "Resources (used/total)\n")
	for _, k := range slices.Sorted(maps.Keys(st.res.Total)) {
		total := st.res.Total[k]
		used := total - st.res.Available[k]
		if k == "memory" {
			fmt.Fprintf(w, "  %s/%s %s\n", bytesString(int64(used)), bytesString(int64(total)), k)
			continue
		}
		fmt.Fprintf(w, "  %g/%g %s\n", used, total, k)
	}
	fmt.Fprintf(w, "Object store\n  %s used of %s, %d objects, %s spilled\n",
		bytesString(st.res.ObjectStoreUsed), bytesString(st.res.ObjectStoreCapacity), st.res.ObjectStoreObjects, bytesString(st.res.ObjectStoreSpilled))
	fmt.Fprintf(w, "Workers\n  %d processes, %d leased\n", st.res.Workers, st.res.LeasedWorkers)
	running := 0
	for _, j := range st.jobs {
		if j.Alive {
			running++
		}
	}
	fmt.Fprintf(w, "Jobs\n  %d running, %d finished\n", running, len(st.jobs)-running)
	byState := map[string]int{}
	for _, a := range st.actors {
		byState[actorState(a.State)]++
	}
	fmt.Fprintf(w, "Actors\n")
	if len(st.actors) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, s := range []string{"ALIVE", "PENDING", "RESTARTING", "DEAD"} {
		if byState[s] > 0 {
			fmt.Fprintf(w, "  %d %s\n", byState[s], s)
		}
	}
}

func actorState(s rpc.ActorState) string { return strings.TrimPrefix(s.String(), "ACTOR_") }

func shortHex(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ---------------------------------------------------------------- list

func newListCmd() *cobra.Command {
	var addrFlag, format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "list nodes|jobs|actors|tasks|objects|placement-groups",
		Short: "List the cluster's nodes, jobs, actors, recent tasks, stored objects or placement groups",
		Example: `  goray list actors
  goray list actors --filter state=ALIVE --format json
  goray list jobs`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"nodes", "jobs", "actors", "tasks", "objects", "placement-groups"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			want := map[string]string{}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--filter %q: want key=value", f)
				}
				want[strings.ToLower(k)] = v
			}
			var cols []string
			var rows []map[string]string
			switch args[0] {
			case "nodes", "jobs", "actors", "tasks", "objects", "placement-groups":
			default:
				return fmt.Errorf("goray list %q: want nodes, jobs, actors, tasks, objects or placement-groups", args[0])
			}
			ctx, c, done, err := openCluster(cmd, addrFlag)
			if err != nil {
				return err
			}
			defer done()
			switch args[0] {
			case "nodes":
				cols = []string{"node_id", "address", "state", "resources", "store_socket"}
				r, err := c.gcs.GetNodes(ctx, &rpc.GetNodesRequest{})
				if err != nil {
					return err
				}
				for _, n := range r.Nodes {
					state := "ALIVE"
					if !n.Alive {
						state = "DEAD"
					}
					rows = append(rows, map[string]string{"node_id": hex.EncodeToString(n.NodeId), "address": n.RayletAddress,
						"state": state, "resources": resourceString(n.Resources), "store_socket": n.StoreSocket})
				}
			case "jobs":
				cols = []string{"job_id", "status", "driver_pid", "driver_address", "namespace", "entrypoint"}
				r, err := c.gcs.ListJobs(ctx, &rpc.ListJobsRequest{})
				if err != nil {
					return err
				}
				for _, j := range r.Jobs {
					st := "FINISHED"
					if j.Alive {
						st = "RUNNING"
					}
					entry := ""
					if len(j.WorkerArgv) > 0 {
						entry = strings.Join(j.WorkerArgv, " ")
					}
					rows = append(rows, map[string]string{"job_id": hex.EncodeToString(j.JobId), "status": st,
						"driver_pid": fmt.Sprint(j.DriverPid), "driver_address": j.DriverAddress, "namespace": j.Namespace, "entrypoint": entry})
				}
			case "actors":
				cols = []string{"actor_id", "class", "name", "namespace", "state", "pid", "restarts", "death_cause"}
				r, err := c.gcs.ListActors(ctx, &rpc.ListActorsRequest{})
				if err != nil {
					return err
				}
				for _, a := range r.Actors {
					rows = append(rows, map[string]string{"actor_id": hex.EncodeToString(a.ActorId), "class": a.Class, "name": a.Name,
						"namespace": a.Namespace, "state": actorState(a.State), "pid": fmt.Sprint(a.Pid),
						"restarts": fmt.Sprint(a.NumRestarts), "death_cause": a.DeathCause})
				}
			}
			if args[0] == "placement-groups" {
				cols = []string{"placement_group_id", "name", "strategy", "state", "bundles"}
				r, err := c.raylet.ListPlacementGroups(ctx, &rpc.ListPlacementGroupsRequest{})
				if err != nil {
					return err
				}
				for _, g := range r.Groups {
					var bs []string
					for _, b := range g.Bundles {
						bs = append(bs, "{"+resourceString(b.Resources)+"}")
					}
					rows = append(rows, map[string]string{"placement_group_id": hex.EncodeToString(g.PlacementGroupId), "name": g.Name,
						"strategy": g.Strategy, "state": g.State, "bundles": strings.Join(bs, " ")})
				}
			}
			if args[0] == "objects" {
				cols = []string{"object_id", "size", "state", "pins", "job"}
				r, err := c.raylet.ListObjects(ctx, &rpc.ListObjectsRequest{})
				if err != nil {
					return err
				}
				rows = objectRows(r.Objects)
			}
			if args[0] == "tasks" {
				cols = []string{"task_id", "name", "kind", "state", "pid", "duration_ms", "error"}
				r, err := c.gcs.ListTasks(ctx, &rpc.ListTasksRequest{})
				if err != nil {
					return err
				}
				for _, e := range r.Events {
					if e.Kind == "dag" {
						continue // graph operations: goray timeline shows them
					}
					rows = append(rows, map[string]string{"task_id": hex.EncodeToString(e.TaskId), "name": e.Name, "kind": e.Kind,
						"state": e.State, "pid": fmt.Sprint(e.Pid), "duration_ms": fmt.Sprintf("%.3f", float64(e.EndUnixNs-e.StartUnixNs)/1e6),
						"error": e.Error})
				}
			}
			for k := range want {
				if !slices.Contains(cols, k) {
					return fmt.Errorf("--filter %s: %s have no %q (columns: %s)", k, args[0], k, strings.Join(cols, ", "))
				}
			}
			rows = slices.DeleteFunc(rows, func(r map[string]string) bool {
				for k, v := range want {
					if r[k] != v {
						return true
					}
				}
				return false
			})
			return printRows(cmd.OutOrStdout(), format, cols, rows)
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "key=value: only rows whose column key is value (repeatable)")
	return cmd
}

func resourceString(r map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r)) {
		parts = append(parts, fmt.Sprintf("%s=%g", k, r[k]))
	}
	return strings.Join(parts, " ")
}

func printRows(w io.Writer, format string, cols []string, rows []map[string]string) error {
	if format == "json" {
		if rows == nil {
			rows = []map[string]string{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.SetStyle(table.StyleLight)
	hdr := table.Row{}
	for _, c := range cols {
		hdr = append(hdr, strings.ToUpper(c))
	}
	t.AppendHeader(hdr)
	for _, r := range rows {
		row := table.Row{}
		for _, c := range cols {
			row = append(row, r[c])
		}
		t.AppendRow(row)
	}
	t.Render()
	fmt.Fprintf(w, "%d rows\n", len(rows))
	return nil
}

// ---------------------------------------------------------------- summary

func newSummaryCmd() *cobra.Command {
	var addrFlag, format string
	cmd := &cobra.Command{
		Use:       "summary tasks|actors",
		Short:     "Summarise recent tasks by function, or actors by class",
		Example:   "  goray summary tasks\n  goray summary actors --format json",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"tasks", "actors"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			if args[0] != "tasks" && args[0] != "actors" {
				return fmt.Errorf("goray summary %q: want tasks or actors", args[0])
			}
			ctx, c, done, err := openCluster(cmd, addrFlag)
			if err != nil {
				return err
			}
			defer done()
			var cols []string
			var rows []map[string]string
			if args[0] == "tasks" {
				cols = []string{"function", "kind", "finished", "failed", "mean_ms"}
				r, err := c.gcs.ListTasks(ctx, &rpc.ListTasksRequest{})
				if err != nil {
					return err
				}
				type agg struct {
					kind             string
					finished, failed int
					total            int64
				}
				by := map[string]*agg{}
				for _, e := range r.Events {
					if e.Kind == "dag" {
						continue
					}
					a := by[e.Function]
					if a == nil {
						a = &agg{kind: e.Kind}
						by[e.Function] = a
					}
					if e.State == "FAILED" {
						a.failed++
					} else {
						a.finished++
					}
					a.total += e.EndUnixNs - e.StartUnixNs
				}
				for _, f := range slices.Sorted(maps.Keys(by)) {
					a := by[f]
					rows = append(rows, map[string]string{"function": f, "kind": a.kind, "finished": fmt.Sprint(a.finished),
						"failed": fmt.Sprint(a.failed), "mean_ms": fmt.Sprintf("%.3f", float64(a.total)/float64(a.finished+a.failed)/1e6)})
				}
			} else {
				cols = []string{"class", "alive", "pending", "restarting", "dead"}
				r, err := c.gcs.ListActors(ctx, &rpc.ListActorsRequest{})
				if err != nil {
					return err
				}
				by := map[string]map[string]int{}
				for _, a := range r.Actors {
					if by[a.Class] == nil {
						by[a.Class] = map[string]int{}
					}
					by[a.Class][strings.ToLower(actorState(a.State))]++
				}
				for _, cl := range slices.Sorted(maps.Keys(by)) {
					row := map[string]string{"class": cl}
					for _, s := range cols[1:] {
						row[s] = fmt.Sprint(by[cl][s])
					}
					rows = append(rows, row)
				}
			}
			return printRows(cmd.OutOrStdout(), format, cols, rows)
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// ---------------------------------------------------------------- timeline

// traceEvent is one Chrome trace event ("X": a complete event), as
// Perfetto and chrome://tracing read them.
type traceEvent struct {
	Name string            `json:"name"`
	Cat  string            `json:"cat"`
	Ph   string            `json:"ph"`
	Ts   float64           `json:"ts"`  // µs
	Dur  float64           `json:"dur"` // µs
	Pid  string            `json:"pid"` // the node
	Tid  int32             `json:"tid"` // the worker process
	Args map[string]string `json:"args,omitempty"`
}

func newTimelineCmd() *cobra.Command {
	var addrFlag, out string
	cmd := &cobra.Command{
		Use:   "timeline",
		Short: "Write recent tasks, actor calls and compiled-graph operations as a Chrome trace (view in Perfetto)",
		Long: `Write the cluster's recent task events as Chrome trace JSON: one event per
task, actor call, and compiled-graph operation (READ, COMPUTE, WRITE, for graphs
compiled with dag.Profiling()), on a row per worker process. Open the file in
https://ui.perfetto.dev or chrome://tracing.`,
		Example: "  goray timeline -o trace.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, done, err := openCluster(cmd, addrFlag)
			if err != nil {
				return err
			}
			defer done()
			r, err := c.gcs.ListTasks(ctx, &rpc.ListTasksRequest{})
			if err != nil {
				return err
			}
			evs := traceEvents(r.Events)
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			enc := json.NewEncoder(w)
			if err := enc.Encode(evs); err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d events to %s\n", len(evs), out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	return cmd
}

func traceEvents(in []*rpc.TaskEvent) []traceEvent {
	out := make([]traceEvent, 0, len(in))
	for _, e := range in {
		te := traceEvent{Name: e.Name, Cat: e.Kind, Ph: "X", Ts: float64(e.StartUnixNs) / 1e3,
			Dur: float64(e.EndUnixNs-e.StartUnixNs) / 1e3, Pid: "node " + shortHex(e.NodeId), Tid: e.Pid,
			Args: map[string]string{"state": e.State, "function": e.Function}}
		if e.Kind == "dag" {
			te.Args["exec"] = fmt.Sprint(e.Exec)
			te.Args["op"] = e.Op
		} else {
			te.Args["task_id"] = hex.EncodeToString(e.TaskId)
		}
		if e.Error != "" {
			te.Args["error"] = e.Error
		}
		out = append(out, te)
	}
	return out
}

// ---------------------------------------------------------------- memory

func newMemoryCmd() *cobra.Command {
	var addrFlag, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Show object store usage and the largest objects",
		Long: `Show the node's object store usage and its largest objects: size, state
(sealed, being written, spilled), the readers holding it, and the job whose
task or driver made it (an object's ID names its job).`,
		Example: "  goray memory\n  goray memory --limit 50 --format json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			ctx, c, done, err := openCluster(cmd, addrFlag)
			if err != nil {
				return err
			}
			defer done()
			res, err := c.raylet.GetResources(ctx, &rpc.GetResourcesRequest{})
			if err != nil {
				return err
			}
			objs, err := c.raylet.ListObjects(ctx, &rpc.ListObjectsRequest{Limit: uint32(limit)})
			if err != nil {
				return err
			}
			cols := []string{"object_id", "size", "state", "pins", "owner", "refs"}
			rows := objectRows(objs.Objects)
			owners := findOwners(ctx, c, objs.Objects)
			for i, o := range objs.Objects {
				if ow, ok := owners[string(o.ObjectId)]; ok {
					rows[i]["owner"] = ow.addr
					rows[i]["refs"] = fmt.Sprintf("%d (%d local, %d in tasks, %d borrowers)",
						ow.o.LocalRefs+ow.o.Submitted+ow.o.Borrowers, ow.o.LocalRefs, ow.o.Submitted, ow.o.Borrowers)
				} else {
					rows[i]["owner"], rows[i]["refs"] = "job "+rows[i]["job"]+" (owner gone)", "0"
				}
			}
			if format == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "Object store: %s used of %s, %d objects, %s spilled\n",
					bytesString(res.ObjectStoreUsed), bytesString(res.ObjectStoreCapacity), res.ObjectStoreObjects, bytesString(res.ObjectStoreSpilled))
			}
			return printRows(cmd.OutOrStdout(), format, cols, rows)
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many of the largest objects to list (0: all)")
	return cmd
}

func objectRows(objs []*rpc.StoreObject) []map[string]string {
	var rows []map[string]string
	for _, o := range objs {
		job := ""
		if len(o.ObjectId) == ids.ObjectIDSize {
			j := ids.ObjectID(o.ObjectId).Job()
			job = hex.EncodeToString(j[:])
		}
		rows = append(rows, map[string]string{"object_id": hex.EncodeToString(o.ObjectId), "size": bytesString(o.Size),
			"state": o.State, "pins": fmt.Sprint(o.Pins), "job": job})
	}
	return rows
}

type ownerInfo struct {
	addr string
	o    *rpc.OwnedObject
}

// findOwners asks every process of the cluster (the drivers of running
// jobs, the workers) which of objs it owns, and with how many refs: the
// counts live in the owners, not in the store.
func findOwners(ctx context.Context, c *clusterClient, objs []*rpc.StoreObject) map[string]ownerInfo {
	out := map[string]ownerInfo{}
	if len(objs) == 0 {
		return out
	}
	req := &rpc.OwnedObjectsRequest{}
	for _, o := range objs {
		req.ObjectIds = append(req.ObjectIds, o.ObjectId)
	}
	var addrs []string
	if jobs, err := c.gcs.ListJobs(ctx, &rpc.ListJobsRequest{}); err == nil {
		for _, j := range jobs.Jobs {
			if j.Alive {
				addrs = append(addrs, j.DriverAddress)
			}
		}
	}
	if ws, err := c.raylet.ListWorkers(ctx, &rpc.ListWorkersRequest{}); err == nil {
		for _, w := range ws.Workers {
			addrs = append(addrs, w.Address)
		}
	}
	peers := &rpc.Peers{Token: c.token}
	defer peers.Close()
	for _, addr := range addrs {
		p, err := peers.Peer(addr)
		if err != nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rep, err := p.OwnedObjects(actx, req)
		cancel()
		if err != nil {
			continue
		}
		for _, o := range rep.Objects {
			out[string(o.ObjectId)] = ownerInfo{addr: addr, o: o}
		}
	}
	return out
}

// openCluster connects to the cluster for one command, bounded by 10 s;
// done releases both.
func openCluster(cmd *cobra.Command, addrFlag string) (context.Context, *clusterClient, func(), error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	c, err := dialCluster(ctx, addrFlag)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Close(); cancel() }, nil
}

func checkFormat(format string) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("--format %q: want table or json", format)
	}
	return nil
}
