package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluicehq/sluice/pipeline"
)

// RerunWorkflowName is the type of the workflow a rerun schedule starts
// (sluice schedule create NAME --pipeline P --rerun LABEL): each run
// sends pipeline.rerun to the long-running pipeline P.
const RerunWorkflowName = "Rerun"

// RerunRequest is the Rerun workflow's input: the pipeline, by name, and
// the label of the input connectors to run again.
type RerunRequest struct {
	Pipeline string `json:"pipeline"`
	Label    string `json:"label"`
}

// Rerun re-runs the input connectors labelled in.Label of the running
// pipeline in.Pipeline from the beginning of their input (the update
// pipeline.rerun, sent by the Control activity: a workflow cannot send an
// update itself) and returns the pipeline's stats once they started. It
// fails, changing nothing, when the pipeline has no running workflow, no
// input connector carries the label, or one of them still runs (the
// schedule's previous re-run has not finished).
func Rerun(ctx workflow.Context, in RerunRequest) (PipelineStats, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var c *Control
	var st PipelineStats
	err := workflow.ExecuteActivity(ctx, c.RerunPipeline, in).Get(ctx, &st)
	return st, err
}

// Control holds the activities that drive a Pipeline workflow through
// the Temporal client of the worker that runs them.
type Control struct {
	Client client.Client
}

// RerunPipeline sends pipeline.rerun with in.Label to the workflow
// pipeline-<in.Pipeline> and waits for its answer. A refusal (no such
// running pipeline, no connector with the label, one of them running) is
// a non-retryable error; failing to reach the server is retried.
func (c *Control) RerunPipeline(ctx context.Context, in RerunRequest) (PipelineStats, error) {
	h, err := c.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   pipeline.WorkflowID(in.Pipeline),
		UpdateName:   PipelineRerun,
		Args:         []any{RerunInput{Label: in.Label}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return PipelineStats{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipeline %s has no running workflow", in.Pipeline), "NotFound", err)
		}
		return PipelineStats{}, err
	}
	var st PipelineStats
	if err := h.Get(ctx, &st); err != nil {
		return PipelineStats{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipeline %s refused the re-run: %v", in.Pipeline, err), "Refused", nil)
	}
	return st, nil
}
