package sluice

import (
	"context"
	"errors"
	"fmt"
	"sort"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// Apply sends a running pipeline its changed definition (the
// pipeline.update update) and returns what changed. Added and removed
// connectors and the config of connectors that are not running are
// applied; anything else (a running connector's config, a table's
// columns) is refused with an error naming it, and nothing changes.
func Apply(ctx context.Context, c client.Client, p *pipeline.Pipeline) (workflows.Changes, error) {
	var ch workflows.Changes
	err := Update(ctx, c, p.Name, workflows.PipelineUpdate, *p, &ch)
	return ch, err
}

// ErrRunning is returned by Clear for a pipeline whose workflow runs.
var ErrRunning = errors.New("pipeline is running")

// Clear deletes the tables of a pipeline whose workflow is not running
// (Feldera's clear storage): every table of its newest run's definition
// under dataDir, and the locations that run recorded. It returns the
// locations it deleted. Outputs' positions in their destinations stay.
func Clear(ctx context.Context, c client.Client, name, dataDir string, o store.Options) ([]string, error) {
	id := pipeline.WorkflowID(name)
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	if d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, fmt.Errorf("%w: %s: stop it first (sluice pipeline stop %s)", ErrRunning, name, name)
	}
	in, err := startInput(ctx, c, id, d.WorkflowExecutionInfo.Execution.RunId)
	if err != nil {
		return nil, err
	}
	locs := map[string]bool{}
	for _, t := range in.Pipeline.Tables {
		locs[store.Location(dataDir, name, t.Name)] = true
	}
	if in.State != nil {
		for _, ref := range in.State.Tables {
			if ref.Location != "" {
				locs[ref.Location] = true
			}
		}
	}
	var dropped []string
	for loc := range locs {
		dropped = append(dropped, loc)
	}
	sort.Strings(dropped)
	for i, loc := range dropped {
		if err := store.Drop(ctx, loc, o); err != nil {
			return dropped[:i], err
		}
	}
	return dropped, nil
}

// startInput reads a run's input from its first history event.
func startInput(ctx context.Context, c client.Client, id, runID string) (workflows.Input, error) {
	var in workflows.Input
	it := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return in, fmt.Errorf("pipeline workflow %s has no history", id)
	}
	ev, err := it.Next()
	if err != nil {
		return in, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil || attrs.Input == nil || len(attrs.Input.Payloads) == 0 {
		return in, fmt.Errorf("pipeline workflow %s: no input in its first event", id)
	}
	if err := client.NewValue(attrs.Input).Get(&in); err != nil {
		return in, fmt.Errorf("pipeline workflow %s: its input: %w", id, err)
	}
	return in, nil
}
