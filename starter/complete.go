package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// Shell completion of pipeline, table and connector names. The names come
// from the Temporal server (the Pipeline workflows, and a pipeline's stats
// query) and, for `sluice table`, from the table store's directories
// under a local --data-dir. A completion never prints an error: a server
// that does not answer within completeTimeout just completes nothing.

// completeTimeout bounds the server round trips of one completion.
const completeTimeout = 2 * time.Second

// connectorActions are the actions of `sluice connector PIPELINE TABLE
// CONNECTOR ACTION`, completed as its fourth argument.
var connectorActions = []string{"start", "pause", "stats", "checkpoint", "set-checkpoint", "reset", "update-config"}

// completePipelineArg completes a command's first argument, a pipeline
// name, and nothing after it.
func completePipelineArg(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completeContext(cmd)
		defer cancel()
		return pipelineNames(ctx), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeConnectorArgs completes `PIPELINE TABLE CONNECTOR ACTION`: a
// pipeline, one of its tables, one of that table's connectors, then an
// action word, then update-config's file.
func completeConnectorArgs(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 3 {
			return slices.Clone(connectorActions), cobra.ShellCompDirectiveNoFileComp
		}
		if len(args) == 4 && args[3] == "update-config" {
			return nil, cobra.ShellCompDirectiveDefault // FILE|JSON: the shell completes file names
		}
		if len(args) > 3 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completeContext(cmd)
		defer cancel()
		switch len(args) {
		case 0:
			return pipelineNames(ctx), cobra.ShellCompDirectiveNoFileComp
		case 1:
			return tableNames(ctx, args[0]), cobra.ShellCompDirectiveNoFileComp
		default:
			return connectorNames(ctx, args[0], args[1]), cobra.ShellCompDirectiveNoFileComp
		}
	}
}

// completeTableArgs completes `sluice table PIPELINE TABLE` from the
// server and from the table store under --data-dir, so that a pipeline
// whose workflow is gone still completes.
func completeTableArgs(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completeContext(cmd)
		defer cancel()
		var names []string
		if len(args) == 0 {
			names = append(storedPipelines(g.dataDir), pipelineNames(ctx)...)
		} else {
			names = append(storedTables(g.dataDir, args[0]), tableNames(ctx, args[0])...)
		}
		slices.Sort(names)
		return slices.Compact(names), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeContext is the context of one completion: the command's,
// bounded by completeTimeout.
func completeContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completeTimeout)
}

// completionClient dials the server from the standard Temporal
// environment, or returns nil: completions print no errors.
func completionClient(ctx context.Context) client.Client {
	opts, err := sluice.ClientOptions()
	if err != nil {
		return nil
	}
	opts.Logger = silent{}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil
	}
	return c
}

// pipelineNames lists the pipelines with a workflow (running or closed),
// each once, sorted.
func pipelineNames(ctx context.Context) []string {
	c := completionClient(ctx)
	if c == nil {
		return nil
	}
	defer c.Close()
	seen := map[string]bool{}
	req := &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowType = '" + workflows.WorkflowName + "'"}
	for page := 0; page < 10; page++ {
		resp, err := c.ListWorkflow(ctx, req)
		if err != nil {
			break
		}
		for _, e := range resp.Executions {
			if name := pipelineOf(e.GetSearchAttributes().GetIndexedFields(), e.GetExecution().GetWorkflowId()); name != "" {
				seen[name] = true
			}
		}
		if len(resp.NextPageToken) == 0 {
			break
		}
		req.NextPageToken = resp.NextPageToken
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// pipelineOf is a Pipeline workflow's pipeline name: its SluicePipeline
// search attribute when set, else the name in its workflow ID.
func pipelineOf(attrs map[string]*commonpb.Payload, workflowID string) string {
	if p := attrs[workflows.SearchAttributePipeline]; p != nil {
		var name string
		if converter.GetDefaultDataConverter().FromPayload(p, &name) == nil && pipeline.CheckName(name) == nil {
			return name
		}
	}
	prefix := pipeline.WorkflowID("")
	if !strings.HasPrefix(workflowID, prefix) || pipeline.CheckName(workflowID[len(prefix):]) != nil {
		return ""
	}
	return workflowID[len(prefix):]
}

// endpoints returns the "table.connector" names of a pipeline's inputs
// and outputs, from its stats query.
func endpoints(ctx context.Context, name string) []string {
	c := completionClient(ctx)
	if c == nil {
		return nil
	}
	defer c.Close()
	s, err := sluice.Stats(ctx, c, name)
	if err != nil {
		return nil
	}
	var out []string
	for _, cs := range append(s.Inputs, s.Outputs...) {
		out = append(out, cs.EndpointName)
	}
	return out
}

// tableNames lists a pipeline's tables, from the server.
func tableNames(ctx context.Context, pipelineName string) []string {
	var names []string
	for _, ep := range endpoints(ctx, pipelineName) {
		if table, _, ok := strings.Cut(ep, "."); ok {
			names = append(names, table)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// connectorNames lists a table's connectors, from the server.
func connectorNames(ctx context.Context, pipelineName, table string) []string {
	var names []string
	for _, ep := range endpoints(ctx, pipelineName) {
		if t, conn, ok := strings.Cut(ep, "."); ok && t == table {
			names = append(names, conn)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// storedPipelines lists the pipelines that have a directory under a local
// table store root (s3:// roots are not listed).
func storedPipelines(root string) []string {
	if strings.Contains(root, "://") {
		return nil
	}
	var names []string
	for _, e := range readDir(store.Location(root, "", "")) {
		if len(storedTables(root, e)) > 0 {
			names = append(names, e)
		}
	}
	return names
}

// storedTables lists the tables of a pipeline under a local table store
// root: the directories with a Delta log.
func storedTables(root, pipelineName string) []string {
	if strings.Contains(root, "://") || pipeline.CheckName(pipelineName) != nil {
		return nil
	}
	var names []string
	for _, e := range readDir(store.Location(root, pipelineName, "")) {
		if st, err := os.Stat(filepath.Join(store.Location(root, pipelineName, e), delta.LogDir)); err == nil && st.IsDir() {
			names = append(names, e)
		}
	}
	return names
}

// readDir lists the subdirectories of dir whose names are valid pipeline
// or table names.
func readDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && pipeline.CheckName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names
}
