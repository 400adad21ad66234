package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/spf13/cobra"

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
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := dialCluster(ctx, addrFlag)
			if err != nil {
				return err
			}
			defer c.Close()
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
		Use:   "list nodes|jobs|actors",
		Short: "List the cluster's nodes, jobs or actors",
		Example: `  goray list actors
  goray list actors --filter state=ALIVE --format json
  goray list jobs`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"nodes", "jobs", "actors", "tasks", "objects", "placement-groups"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			want := map[string]string{}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--filter %q: want key=value", f)
				}
				want[strings.ToLower(k)] = v
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var cols []string
			var rows []map[string]string
			switch args[0] {
			case "nodes", "jobs", "actors":
			case "tasks", "objects", "placement-groups":
				return fmt.Errorf("goray list %s is not built yet: nodes, jobs and actors are", args[0])
			default:
				return fmt.Errorf("goray list %q: want nodes, jobs or actors", args[0])
			}
			c, err := dialCluster(ctx, addrFlag)
			if err != nil {
				return err
			}
			defer c.Close()
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
