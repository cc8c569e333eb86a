// Package sluice wires Sluice together for its programs and for programs
// that embed it: [NewWorker] registers the Pipeline workflow and the Ingest
// activity on a Temporal worker, [Start] validates and starts a pipeline,
// and [Stats] reads a pipeline's status with live metrics.
//
// The programs are worker/ (a worker process) and starter/ (the sluice
// command line).
package sluice

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// DefaultTaskQueue is the task queue of Sluice's workflows and activities.
const DefaultTaskQueue = "sluice"

// DefaultDataDir is the table store's default root.
const DefaultDataDir = ".sluice/tables"

// WorkerOptions configure [NewWorker]. Zero values take the defaults.
type WorkerOptions struct {
	// TaskQueue; default DefaultTaskQueue.
	TaskQueue string
	// DataDir is the table store's root, a directory or
	// s3://bucket/prefix; default DefaultDataDir. Every worker of a
	// cluster must see the same one: with several machines, object storage.
	DataDir string
	// Store tunes the table store: log checkpoints, compaction, retention,
	// and the S3 settings of an s3:// DataDir.
	Store store.Options
	// Registry of transports, required: builtin.Registry() for the
	// transports that ship with Sluice. (Package sluice does not import
	// builtin, so that the command line, which uses this package to
	// start and watch pipelines, links no connector's heavy library.)
	Registry *connectors.Registry
	// Allocator for record batches; default memory.DefaultAllocator.
	Allocator memory.Allocator
	// MaxConcurrentConnectors bounds the Ingest activities this worker runs
	// at once; default 100.
	MaxConcurrentConnectors int
	// AllowEnv are the globs (path.Match) of the environment variables a
	// connector config may read with ${env:NAME}; nil is
	// connectors.DefaultAllowEnv (SLUICE_*). A reference outside them
	// fails the connector with a config error naming the variable.
	AllowEnv []string
	// Observer, if set, sees every connector's progress at each
	// heartbeat and when its activity returns (activities.Observer): the
	// worker's Prometheus metrics (metrics.Collector) use it.
	Observer activities.Observer
}

// NewWorker returns a worker (not started) that runs the Pipeline
// workflow with its activities, and the Rerun workflow of rerun
// schedules, whose activity sends updates through c. Heartbeats are sent
// at most once a second, so a pause reaches a running connector within
// about a second. It panics if o.Registry is nil.
func NewWorker(c client.Client, o WorkerOptions) worker.Worker {
	if o.TaskQueue == "" {
		o.TaskQueue = DefaultTaskQueue
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Registry == nil {
		panic("sluice.NewWorker: WorkerOptions.Registry is nil (use builtin.Registry())")
	}
	if o.MaxConcurrentConnectors == 0 {
		o.MaxConcurrentConnectors = 100
	}
	w := worker.New(c, o.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize: o.MaxConcurrentConnectors,
		MaxHeartbeatThrottleInterval:       time.Second,
		DefaultHeartbeatThrottleInterval:   time.Second,
	})
	w.RegisterWorkflowWithOptions(workflows.Pipeline, workflow.RegisterOptions{Name: workflows.WorkflowName})
	w.RegisterWorkflowWithOptions(workflows.Rerun, workflow.RegisterOptions{Name: workflows.RerunWorkflowName})
	w.RegisterActivity(&workflows.Control{Client: c})
	w.RegisterActivityWithOptions(&activities.Activities{Registry: o.Registry, DataDir: o.DataDir, Store: o.Store, Allocator: o.Allocator, Env: connectors.Env{Allow: o.AllowEnv}, Observer: o.Observer}, activity.RegisterOptions{})
	return w
}

// ClientOptions returns client options from the standard Temporal
// environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
// TEMPORAL_TLS_*, TEMPORAL_PROFILE and the config file), as the temporal
// CLI reads them (go.temporal.io/sdk/contrib/envconfig).
func ClientOptions() (client.Options, error) {
	o, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return o, fmt.Errorf("temporal client config: %w", err)
	}
	return o, nil
}

// Load reads and validates a pipeline file against the transports of
// reg (checks.Registry() or builtin.Registry() for Sluice's own; a worker with more transports
// validates with its registry). Notices say what was read but ignored.
// The error lists every problem. ${schedule:...} placeholders are refused:
// they belong to scheduled runs (LoadScheduled).
func Load(path string, reg *connectors.Registry) (*pipeline.Pipeline, []string, error) {
	p, notices, err := pipeline.LoadFile(path)
	if err != nil {
		return nil, notices, err
	}
	if err := pipeline.CheckNoSchedulePlaceholders(p); err != nil {
		return nil, notices, fmt.Errorf("%s: %w", path, err)
	}
	if err := pipeline.Validate(p, reg); err != nil {
		return nil, notices, fmt.Errorf("%s: invalid pipeline:\n%w", path, err)
	}
	return p, notices, nil
}

// StartOptions configure [Start].
type StartOptions struct {
	// TaskQueue; default DefaultTaskQueue.
	TaskQueue string
	// Paused starts the pipeline Paused.
	Paused bool
	// StopAtEndOfInput completes the workflow once every connector has
	// finished (sluice run does this unless --keep-open), as the pipeline
	// file's stop_at_end_of_input does.
	StopAtEndOfInput bool
	// Namespace is the namespace c is connected to (client.Options'),
	// where Start looks up Sluice's search attributes; default "default".
	Namespace string
}

// ErrAlreadyRunning is returned by Start when the pipeline's workflow is
// running already; the run returned is the running one.
var ErrAlreadyRunning = errors.New("pipeline is already running")

// Start starts the pipeline's workflow (ID "pipeline-<name>"). If it is
// running already, Start returns that run and ErrAlreadyRunning. The
// search attributes are kept up to date when the namespace has them.
func Start(ctx context.Context, c client.Client, p *pipeline.Pipeline, o StartOptions) (client.WorkflowRun, error) {
	if o.TaskQueue == "" {
		o.TaskQueue = DefaultTaskQueue
	}
	id := pipeline.WorkflowID(p.Name)
	if d, err := c.DescribeWorkflowExecution(ctx, id, ""); err == nil &&
		d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return c.GetWorkflow(ctx, id, d.WorkflowExecutionInfo.Execution.RunId), ErrAlreadyRunning
	}
	in := workflows.Input{Pipeline: *p, Paused: o.Paused, SearchAttributes: HasSearchAttributes(ctx, c, o.Namespace)}
	in.Pipeline.StopAtEndOfInput = in.Pipeline.StopAtEndOfInput || o.StopAtEndOfInput
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             o.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:         workflows.Summary(p),
		StaticDetails:         workflows.StaticDetails(p),
	}, workflows.WorkflowName, in)
	if err != nil {
		return nil, fmt.Errorf("start pipeline %s: %w", p.Name, err)
	}
	return run, nil
}

// HasSearchAttributes reports whether namespace ("" is "default") has
// Sluice's search attributes (SluicePipeline, SluiceState) as custom
// search attributes, as [Start] and [CreateSchedule] decide before
// setting them. It asks the operator service (ListSearchAttributes): the
// older GetSearchAttributes answers with the visibility store's columns,
// not a namespace's names. An error (no permission, say) is false.
func HasSearchAttributes(ctx context.Context, c client.Client, namespace string) bool {
	if namespace == "" {
		namespace = client.DefaultNamespace
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return false
	}
	_, a := resp.CustomAttributes[workflows.SearchAttributePipeline]
	_, b := resp.CustomAttributes[workflows.SearchAttributeState]
	return a && b
}

// ErrNotFound is returned for a pipeline with no workflow.
var ErrNotFound = errors.New("no such pipeline")

// Stats returns a pipeline's stats: the workflow's stats query, with each
// running connector's metrics replaced by its activity's latest heartbeat
// (from DescribeWorkflowExecution), which is fresher.
func Stats(ctx context.Context, c client.Client, name string) (workflows.PipelineStats, error) {
	var s workflows.PipelineStats
	id := pipeline.WorkflowID(name)
	resp, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStats)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return s, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return s, fmt.Errorf("query pipeline %s: %w", name, err)
	}
	if err := resp.Get(&s); err != nil {
		return s, err
	}
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return s, nil // the query's view is still right, only older
	}
	live := map[string]activities.Progress{}
	started := map[string]bool{} // endpoints whose activity has heartbeated
	for _, pa := range d.PendingActivities {
		if pa.HeartbeatDetails == nil || pa.State == enumspb.PENDING_ACTIVITY_STATE_SCHEDULED {
			continue
		}
		var p activities.Progress
		if err := client.NewValue(pa.HeartbeatDetails).Get(&p); err != nil {
			continue
		}
		ep := pa.ActivityId
		if i := lastDash(ep); i > 0 {
			ep = ep[:i]
		}
		live[ep] = p
		started[ep] = true
	}
	// The workflow says Running from the moment it schedules a
	// connector's activity; until the activity has opened its source and
	// heartbeated, the connector is Starting.
	for _, list := range [][]workflows.ConnectorStats{s.Inputs, s.Outputs} {
		for i := range list {
			if list[i].State == workflows.StateRunning && !started[list[i].EndpointName] {
				list[i].State = workflows.StateStarting
			}
		}
	}
	s.GlobalMetrics = workflows.GlobalMetrics{PipelineComplete: s.GlobalMetrics.PipelineComplete}
	for i := range s.Outputs {
		out := &s.Outputs[i]
		if p, ok := live[out.EndpointName]; ok && !out.Finished && p.Output != nil {
			out.OutputMetrics, out.Checkpoint = p.Output, p.Checkpoint
		}
		if out.OutputMetrics != nil {
			s.GlobalMetrics.TotalOutputRecords += out.OutputMetrics.TransmittedRecords
		}
	}
	for i := range s.Inputs {
		in := &s.Inputs[i]
		if p, ok := live[in.EndpointName]; ok && !in.Finished {
			in.Metrics, in.Checkpoint = p.Metrics, p.Checkpoint
			if len(p.ParseErrors) > 0 {
				in.ParseErrors = p.ParseErrors
			}
		}
		s.GlobalMetrics.TotalInputRecords += in.Metrics.TotalRecords
		s.GlobalMetrics.TotalInputBytes += in.Metrics.TotalBytes
		s.GlobalMetrics.BufferedInputRecords += in.Metrics.BufferedRecords
		s.GlobalMetrics.NumParseErrors += in.Metrics.NumParseErrors
	}
	return s, nil
}

func lastDash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' {
			return i
		}
	}
	return -1
}

// ConnectorStats returns one connector's stats (see [Stats]).
func ConnectorStats(ctx context.Context, c client.Client, pipelineName, table, connector string) (workflows.ConnectorStats, error) {
	s, err := Stats(ctx, c, pipelineName)
	if err != nil {
		return workflows.ConnectorStats{}, err
	}
	for _, in := range append(s.Inputs, s.Outputs...) {
		if in.EndpointName == pipeline.Endpoint(table, connector) {
			return in, nil
		}
	}
	return workflows.ConnectorStats{}, fmt.Errorf("pipeline %s has no connector %s.%s", pipelineName, table, connector)
}

// Command sends one of the workflow's updates (connector.start,
// connector.pause, pipeline.start, pipeline.pause, pipeline.stop) and
// waits for its answer: an unknown table or connector is an error.
func Command(ctx context.Context, c client.Client, pipelineName, name string, ref *workflows.ConnectorRef) error {
	var arg any
	if ref != nil {
		arg = *ref
	}
	return Update(ctx, c, pipelineName, name, arg, nil)
}

// Rerun re-runs the input connectors carrying label in the running
// pipeline name from the beginning of their input (the update
// pipeline.rerun: each is reset, as connector.reset, and started; the
// rows they committed before stay in the table, and they append their
// input again under a new writer). It answers with the pipeline's stats
// once they started; it is refused, changing nothing, while one of them
// runs or when none carries the label.
func Rerun(ctx context.Context, c client.Client, name, label string) (workflows.PipelineStats, error) {
	var st workflows.PipelineStats
	err := Update(ctx, c, name, workflows.PipelineRerun, workflows.RerunInput{Label: label}, &st)
	return st, err
}

// Update sends the workflow update name with arg (nil: none), waits for
// it to complete and decodes its answer into result (nil: dropped). The
// connector updates answer with the connector's stats once the command
// took effect (workflows.ConnectorStats), the pipeline updates with the
// pipeline's (workflows.PipelineStats). A refused update's error says
// why; a pipeline with no workflow is ErrNotFound.
func Update(ctx context.Context, c client.Client, pipelineName, name string, arg, result any) error {
	var args []any
	if arg != nil {
		args = append(args, arg)
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   pipeline.WorkflowID(pipelineName),
		UpdateName:   name,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: %s", ErrNotFound, pipelineName)
		}
		return err
	}
	if result == nil {
		return h.Get(ctx, nil)
	}
	return h.Get(ctx, result)
}
