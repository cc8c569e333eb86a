package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// TestWebUIDetails: what the Temporal Web UI and `temporal workflow
// list` show of a pipeline, read back through the client and the real
// temporal CLI: the SluicePipeline and SluiceState search attributes
// follow the pipeline's state, the static summary names its
// connectors, and the current details are a table of connectors with
// their state and records.
func TestWebUIDetails(t *testing.T) {
	srv := startDevServer(t, "--search-attribute", "SluicePipeline=Keyword", "--search-attribute", "SluiceState=Keyword")
	c := srv.client()
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	ctx := context.Background()
	name := "uidetails"
	p := ctlPipeline(t, name, `      - name: backfill
        labels: [backfill]
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 50}]}}
      - name: manual
        labels: [manual]
        paused: true
        transport: {name: datagen, config: {seed: 2, plan: [{limit: 5}]}}
      - name: live
        start_after: [backfill, manual]
        transport: {name: datagen, config: {seed: 3, plan: [{rate: 5}]}}
`)
	run, err := sluice.Start(ctx, c, p, sluice.StartOptions{StopAtEndOfInput: true})
	require.NoError(t, err)

	list := func(query string) []string {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err)
		var ids []string
		for _, e := range resp.Executions {
			ids = append(ids, e.Execution.WorkflowId)
		}
		return ids
	}
	eventually(t, 30*time.Second, "the running pipeline is found by its search attributes", func() bool {
		return strings.Contains(strings.Join(list(`SluicePipeline="uidetails" AND SluiceState="Running"`), ","), pipeline.WorkflowID(name))
	})
	out, err := exec.Command(srv.bin, "workflow", "list", "--address", srv.Address(), "--query", `SluiceState="Running"`).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), pipeline.WorkflowID(name), "temporal workflow list --query 'SluiceState=\"Running\"' finds it")

	// The current details (the UI's __temporal_workflow_metadata query).
	details := func() string {
		v, err := c.QueryWorkflow(ctx, pipeline.WorkflowID(name), "", "__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		return md.GetCurrentDetails()
	}
	eventually(t, time.Minute, "the details show the backfill finished with its records", func() bool {
		d := details()
		return strings.Contains(d, "| events.backfill | datagen | Finished | 50 | yes |")
	})
	d := details()
	require.Contains(t, d, "| connector | kind | state | records | end of input | error |")
	require.Contains(t, d, "| events.manual | datagen | Paused | 0 |  |  |")
	require.Contains(t, d, "| events.live | datagen | Paused (start_after backfill, manual) | 0 |", "live waits for manual")

	desc, err := c.DescribeWorkflowExecution(ctx, pipeline.WorkflowID(name), "")
	require.NoError(t, err)
	var summary string
	require.NotNil(t, desc.ExecutionConfig.GetUserMetadata().GetSummary())
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.ExecutionConfig.GetUserMetadata().GetSummary(), &summary))
	require.Equal(t, "Sluice pipeline uidetails — events: backfill (datagen), manual (datagen), live (datagen)", summary)

	// Paused, then stopped: the search attribute follows.
	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelinePause, nil))
	eventually(t, 30*time.Second, "SluiceState=Paused", func() bool {
		return len(list(`SluicePipeline="uidetails" AND SluiceState="Paused"`)) == 1
	})
	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelineStop, nil))
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final))
	eventually(t, 30*time.Second, "SluiceState=Stopped once the workflow completed", func() bool {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `SluicePipeline="uidetails" AND SluiceState="Stopped"`})
		return err == nil && len(resp.Executions) == 1 && resp.Executions[0].Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
}
