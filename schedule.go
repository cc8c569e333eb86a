package sluice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// Scheduled backfills: a Temporal Schedule whose action starts the
// Pipeline workflow, each run a bounded backfill that completes once its
// inputs reached end of input. Connector configs may name the run's
// window with ${schedule:start_time} and ${schedule:end_time} (see
// pipeline.ExpandSchedule).

// ScheduleOptions configure [CreateSchedule]. Exactly one of Cron and
// Every is set.
type ScheduleOptions struct {
	// ID is the schedule's ID (sluice schedule create NAME): letters,
	// digits, '-' and '_'.
	ID string
	// Cron is a cron expression as Temporal reads it ("0 3 * * *",
	// "@daily", "CRON_TZ=Europe/Paris 0 3 * * *"). A cron schedule's
	// windows have a start only: ${schedule:end_time} is an error.
	Cron string
	// Every is the interval of the schedule's times, counted from the Unix
	// epoch (24h runs at 00:00 UTC), a whole number of seconds. A run's
	// window is [its scheduled time, + Every).
	Every time.Duration
	// Overlap says what happens when a run is due while the previous one
	// is still running; default skip (see [ParseOverlap]).
	Overlap enumspb.ScheduleOverlapPolicy
	// Paused creates the schedule paused.
	Paused bool
	// Note is the schedule's note, shown by describe and the Web UI.
	Note string
	// TaskQueue of the workers; default DefaultTaskQueue.
	TaskQueue string
	// Registry of transports the pipeline is validated with; default
	// checks.Registry() (every builtin transport).
	Registry *connectors.Registry
	// Namespace is the namespace c is connected to, where Sluice's search
	// attributes are looked up (see [HasSearchAttributes]).
	Namespace string
}

// Memo fields of the schedules CreateSchedule creates.
const (
	memoPipeline = "sluice_pipeline"
	memoCron     = "sluice_cron"
	memoRerun    = "sluice_rerun"
)

// ErrScheduleNotFound is returned for a schedule that does not exist.
var ErrScheduleNotFound = errors.New("no such schedule")

var overlapNames = map[string]enumspb.ScheduleOverlapPolicy{
	"skip":            enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	"buffer_one":      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
	"buffer_all":      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL,
	"cancel_other":    enumspb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
	"terminate_other": enumspb.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER,
	"allow_all":       enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
}

// ParseOverlap returns the overlap policy named skip, buffer_one,
// buffer_all, cancel_other, terminate_other or allow_all (Temporal's
// policies); "" is unspecified (the schedule's own, skip by default).
func ParseOverlap(name string) (enumspb.ScheduleOverlapPolicy, error) {
	if name == "" {
		return enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED, nil
	}
	if p, ok := overlapNames[strings.ToLower(name)]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("unknown overlap policy %q: want skip, buffer_one, buffer_all, cancel_other, terminate_other or allow_all", name)
}

// OverlapName is the name ParseOverlap reads for p: "skip", ...
func OverlapName(p enumspb.ScheduleOverlapPolicy) string {
	if p == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		return "skip"
	}
	// The protobuf name (String() gives Temporal's CamelCase one).
	return strings.ToLower(strings.TrimPrefix(enumspb.ScheduleOverlapPolicy_name[int32(p)], "SCHEDULE_OVERLAP_POLICY_"))
}

// check returns an error unless the options describe a schedule.
func (o ScheduleOptions) check() error {
	var errs []error
	if err := pipeline.CheckName(o.ID); err != nil {
		errs = append(errs, fmt.Errorf("schedule name: %w", err))
	}
	switch {
	case o.Cron == "" && o.Every == 0:
		errs = append(errs, errors.New("a schedule needs --cron EXPR or --every DURATION"))
	case o.Cron != "" && o.Every != 0:
		errs = append(errs, errors.New("--cron and --every exclude each other"))
	case o.Every < 0 || (o.Cron == "" && o.Every < time.Second):
		errs = append(errs, fmt.Errorf("--every %s: want at least 1s", o.Every))
	case o.Every%time.Second != 0:
		errs = append(errs, fmt.Errorf("--every %s: want a whole number of seconds", o.Every))
	}
	return errors.Join(errs...)
}

// SampleWindow is the window of the schedule's first run after now, the
// one [LoadScheduled] checks a pipeline with: for Every, the next
// multiple of Every since the Unix epoch (as Temporal computes it) and
// its end; for Cron, the next minute with no end. (Temporal's own next
// times are in [DescribeSchedule]'s NextRuns.)
func SampleWindow(o ScheduleOptions, now time.Time) pipeline.Window {
	if o.Every >= time.Second {
		every := int64(o.Every / time.Second)
		next := (now.Unix()/every + 1) * every
		start := time.Unix(next, 0).UTC()
		return pipeline.Window{Start: start, End: start.Add(time.Duration(every) * time.Second)}
	}
	return pipeline.Window{Start: now.UTC().Truncate(time.Minute).Add(time.Minute)}
}

// RunWindow is the window of a run scheduled at start by a schedule with
// the interval every (0 for a cron schedule: no end).
func RunWindow(start time.Time, every time.Duration) pipeline.Window {
	w := pipeline.Window{Start: start.UTC()}
	if every > 0 {
		w.End = w.Start.Add(every)
	}
	return w
}

// CheckScheduled checks that p can run on a schedule: its
// ${schedule:...} placeholders are well formed, the pipeline expanded
// with the window w validates against reg, and every input connector is
// bounded (reaches end of input on its own), since a scheduled run must
// end. Every problem is reported, with its path. p is not changed.
func CheckScheduled(p *pipeline.Pipeline, reg *connectors.Registry, w pipeline.Window) error {
	if reg == nil {
		reg = checks.Registry()
	}
	q := *p
	if err := pipeline.ExpandSchedule(&q, w); err != nil {
		return err
	}
	if err := pipeline.Validate(&q, reg); err != nil {
		return err
	}
	var unbounded []error
	for ti := range q.Tables {
		t := &q.Tables[ti]
		schema, err := t.Schema()
		if err != nil {
			return err
		}
		for ci := range t.Connectors {
			c := &t.Connectors[ci]
			if c.IsOutput() || reg.Bounded(c, schema) {
				continue
			}
			unbounded = append(unbounded, fmt.Errorf("tables[%d].connectors[%d]: connector %s (%s) never reaches end of input, but a scheduled run must end: use a bounded input (file_input without follow, datagen with a limit, kafka_input with enable.partition.eof, delta_table_input in snapshot mode, s3_input, url_input, ...)",
				ti, ci, pipeline.Endpoint(t.Name, c.Name), c.Transport.Name))
		}
	}
	return errors.Join(unbounded...)
}

// LoadScheduled reads a pipeline file for a schedule: it parses it and
// checks it with [CheckScheduled] against the window w (see
// [SampleWindow]). The pipeline returned keeps its placeholders: each run
// substitutes its own window.
func LoadScheduled(path string, reg *connectors.Registry, w pipeline.Window) (*pipeline.Pipeline, []string, error) {
	p, notices, err := pipeline.LoadFile(path)
	if err != nil {
		return nil, notices, err
	}
	if err := CheckScheduled(p, reg, w); err != nil {
		return nil, notices, fmt.Errorf("%s: invalid pipeline for a schedule:\n%w", path, err)
	}
	return p, notices, nil
}

// CreateSchedule creates the Temporal Schedule o.ID whose action starts
// p's Pipeline workflow: workflow ID "pipeline-<name>" (Temporal appends
// each run's scheduled time), with StopAtEndOfInput set so that each run
// completes once its inputs finished, and Input.Schedule naming the
// schedule and its interval. p is checked first with [CheckScheduled]
// against the schedule's next window. When the namespace has Sluice's
// search attributes, the runs and the schedule carry SluicePipeline.
func CreateSchedule(ctx context.Context, c client.Client, p *pipeline.Pipeline, o ScheduleOptions) (client.ScheduleHandle, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.TaskQueue == "" {
		o.TaskQueue = DefaultTaskQueue
	}
	if err := CheckScheduled(p, o.Registry, SampleWindow(o, time.Now())); err != nil {
		return nil, fmt.Errorf("invalid pipeline for a schedule:\n%w", err)
	}
	run := *p
	run.StopAtEndOfInput = true
	sa := HasSearchAttributes(ctx, c, o.Namespace)
	in := workflows.Input{
		Pipeline:         run,
		Schedule:         &workflows.ScheduleInput{ID: o.ID, EverySeconds: int64(o.Every / time.Second)},
		SearchAttributes: sa,
	}
	action := &client.ScheduleWorkflowAction{
		ID:        pipeline.WorkflowID(p.Name),
		Workflow:  workflows.WorkflowName,
		Args:      []any{in},
		TaskQueue: o.TaskQueue,
	}
	return createSchedule(ctx, c, o, action, p.Name, "", sa)
}

// CreateRerunSchedule creates the Temporal Schedule o.ID whose action
// re-runs the input connectors labelled label of the long-running
// pipeline name (the Rerun workflow, which sends pipeline.rerun: each
// connector is reset to the beginning of its input and started, and
// appends its input again). Each run's workflow ID is
// "rerun-<name>-<label>" followed by its scheduled time; a run fails,
// changing nothing, while the previous re-run's connectors still run.
// The pipeline must be running now, with an input connector carrying
// label.
func CreateRerunSchedule(ctx context.Context, c client.Client, name, label string, o ScheduleOptions) (client.ScheduleHandle, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.TaskQueue == "" {
		o.TaskQueue = DefaultTaskQueue
	}
	st, err := Stats(ctx, c, name)
	if err != nil {
		return nil, err
	}
	found := false
	for _, in := range st.Inputs {
		found = found || slices.Contains(in.Config.Labels, label)
	}
	if !found {
		return nil, fmt.Errorf("--rerun %s: no input connector of pipeline %s carries label %q", label, name, label)
	}
	action := &client.ScheduleWorkflowAction{
		ID:        "rerun-" + name + "-" + label,
		Workflow:  workflows.RerunWorkflowName,
		Args:      []any{workflows.RerunRequest{Pipeline: name, Label: label}},
		TaskQueue: o.TaskQueue,
	}
	return createSchedule(ctx, c, o, action, name, label, HasSearchAttributes(ctx, c, o.Namespace))
}

// createSchedule creates the schedule o.ID of action for the pipeline
// name (rerun: the label a rerun schedule re-runs, "" for a scheduled
// pipeline).
func createSchedule(ctx context.Context, c client.Client, o ScheduleOptions, action *client.ScheduleWorkflowAction, name, rerun string, sa bool) (client.ScheduleHandle, error) {
	opts := client.ScheduleOptions{
		ID:      o.ID,
		Action:  action,
		Overlap: o.Overlap,
		Paused:  o.Paused,
		Note:    o.Note,
		Memo:    map[string]any{memoPipeline: name},
	}
	if rerun != "" {
		opts.Memo[memoRerun] = rerun
	}
	if o.Cron != "" {
		opts.Spec.CronExpressions = []string{o.Cron}
		opts.Memo[memoCron] = o.Cron
	} else {
		opts.Spec.Intervals = []client.ScheduleIntervalSpec{{Every: o.Every}}
	}
	if sa {
		attrs := temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttributePipeline).ValueSet(name))
		action.TypedSearchAttributes = attrs
		opts.TypedSearchAttributes = attrs
	}
	h, err := c.ScheduleClient().Create(ctx, opts)
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return nil, fmt.Errorf("schedule %s exists already: delete it first (sluice schedule delete %s)", o.ID, o.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("create schedule %s: %w", o.ID, err)
	}
	return h, nil
}

// ScheduleStatus is a schedule as `sluice schedule describe` shows it.
type ScheduleStatus struct {
	ID       string `json:"id"`
	Pipeline string `json:"pipeline"`
	// Rerun is the label a rerun schedule re-runs in the pipeline; ""
	// for a schedule of fresh pipeline runs.
	Rerun string `json:"rerun,omitempty"`
	// Spec is "every 24h0m0s" or "cron 0 3 * * *".
	Spec       string        `json:"spec"`
	Every      string        `json:"every,omitempty"`
	Cron       string        `json:"cron,omitempty"`
	Overlap    string        `json:"overlap"`
	Paused     bool          `json:"paused"`
	Note       string        `json:"note,omitempty"`
	TaskQueue  string        `json:"task_queue"`
	WorkflowID string        `json:"workflow_id"` // each run's ID is this, "-", its scheduled time
	Actions    int           `json:"actions"`     // runs started so far
	NextRuns   []time.Time   `json:"next_runs"`
	RecentRuns []ScheduleRun `json:"recent_runs"` // oldest first
	Running    []string      `json:"running"`     // workflow IDs of runs still running
	CreatedAt  time.Time     `json:"created_at"`
}

// ScheduleRun is one run a schedule started.
type ScheduleRun struct {
	ScheduledTime time.Time `json:"scheduled_time"` // the window's start
	ActualTime    time.Time `json:"actual_time"`
	WorkflowID    string    `json:"workflow_id"`
	RunID         string    `json:"run_id"`
	// Status is the workflow's: Running, Completed, Failed, Terminated, ...
	Status string `json:"status,omitempty"`
}

func scheduleErr(id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: %s", ErrScheduleNotFound, id)
	}
	return fmt.Errorf("schedule %s: %w", id, err)
}

// DescribeSchedule returns a schedule's spec, state, next runs and recent
// runs with their workflow IDs and status.
func DescribeSchedule(ctx context.Context, c client.Client, id string) (*ScheduleStatus, error) {
	d, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		return nil, scheduleErr(id, err)
	}
	s := &ScheduleStatus{ID: id, Actions: d.Info.NumActions, NextRuns: d.Info.NextActionTimes, CreatedAt: d.Info.CreatedAt,
		RecentRuns: []ScheduleRun{}, Running: []string{}}
	if d.Schedule.State != nil {
		s.Paused, s.Note = d.Schedule.State.Paused, d.Schedule.State.Note
	}
	if d.Schedule.Policy != nil {
		s.Overlap = OverlapName(d.Schedule.Policy.Overlap)
	}
	memo := memoStrings(d.Memo)
	s.Pipeline, s.Rerun = memo[memoPipeline], memo[memoRerun]
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
		s.TaskQueue, s.WorkflowID = a.TaskQueue, a.ID
		if s.Pipeline == "" && len(a.Args) > 0 {
			if pl, ok := a.Args[0].(*commonpb.Payload); ok {
				var in workflows.Input
				if converter.GetDefaultDataConverter().FromPayload(pl, &in) == nil {
					s.Pipeline = in.Pipeline.Name
				}
			}
		}
	}
	s.Spec, s.Every, s.Cron = describeSpec(d.Schedule.Spec, memo[memoCron])
	for _, w := range d.Info.RunningWorkflows {
		s.Running = append(s.Running, w.WorkflowID)
	}
	for _, a := range d.Info.RecentActions {
		r := ScheduleRun{ScheduledTime: a.ScheduleTime.UTC(), ActualTime: a.ActualTime.UTC()}
		if w := a.StartWorkflowResult; w != nil {
			r.WorkflowID, r.RunID = w.WorkflowID, w.FirstExecutionRunID
			if wd, err := c.DescribeWorkflowExecution(ctx, w.WorkflowID, w.FirstExecutionRunID); err == nil {
				r.Status = statusName(wd.WorkflowExecutionInfo.Status)
			}
		}
		s.RecentRuns = append(s.RecentRuns, r)
	}
	return s, nil
}

func statusName(st enumspb.WorkflowExecutionStatus) string {
	name := strings.ToLower(strings.TrimPrefix(enumspb.WorkflowExecutionStatus_name[int32(st)], "WORKFLOW_EXECUTION_STATUS_"))
	name = strings.ReplaceAll(name, "_", " ")
	if name == "" {
		return ""
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

func describeSpec(spec *client.ScheduleSpec, cron string) (text, every, cronOut string) {
	if cron != "" {
		return "cron " + cron, "", cron
	}
	if spec == nil {
		return "", "", ""
	}
	var parts []string
	for _, iv := range spec.Intervals {
		every = iv.Every.String()
		p := "every " + every
		if iv.Offset != 0 {
			p += " offset " + iv.Offset.String()
		}
		parts = append(parts, p)
	}
	for _, e := range spec.CronExpressions {
		parts = append(parts, "cron "+e)
	}
	if n := len(spec.Calendars); n > 0 {
		parts = append(parts, fmt.Sprintf("%d calendar spec(s)", n))
	}
	return strings.Join(parts, ", "), every, ""
}

func memoStrings(m *commonpb.Memo) map[string]string {
	out := map[string]string{}
	if m == nil {
		return out
	}
	for k, p := range m.Fields {
		var s string
		if converter.GetDefaultDataConverter().FromPayload(p, &s) == nil {
			out[k] = s
		}
	}
	return out
}

// ScheduleSummary is one line of `sluice schedule list`.
type ScheduleSummary struct {
	ID       string     `json:"id"`
	Pipeline string     `json:"pipeline"`
	Rerun    string     `json:"rerun,omitempty"` // see ScheduleStatus.Rerun
	Spec     string     `json:"spec"`
	Paused   bool       `json:"paused"`
	Note     string     `json:"note,omitempty"`
	NextRun  *time.Time `json:"next_run,omitempty"`
	LastRun  *time.Time `json:"last_run,omitempty"`
}

// ListSchedules lists the schedules that start Pipeline workflows or
// re-run labelled connectors (Rerun workflows), by ID. Temporal lists schedules from its visibility store, which may lag
// a just-created schedule by a moment.
func ListSchedules(ctx context.Context, c client.Client) ([]ScheduleSummary, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []ScheduleSummary
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if e.WorkflowType.Name != workflows.WorkflowName && e.WorkflowType.Name != workflows.RerunWorkflowName {
			continue
		}
		memo := memoStrings(e.Memo)
		s := ScheduleSummary{ID: e.ID, Pipeline: memo[memoPipeline], Rerun: memo[memoRerun], Paused: e.Paused, Note: e.Note}
		s.Spec, _, _ = describeSpec(e.Spec, memo[memoCron])
		if len(e.NextActionTimes) > 0 {
			t := e.NextActionTimes[0].UTC()
			s.NextRun = &t
		}
		if n := len(e.RecentActions); n > 0 {
			t := e.RecentActions[n-1].ScheduleTime.UTC()
			s.LastRun = &t
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PauseSchedule pauses a schedule: no run starts at its times until
// [UnpauseSchedule] (trigger and backfill still start runs).
func PauseSchedule(ctx context.Context, c client.Client, id, note string) error {
	if note == "" {
		note = "paused with sluice schedule pause"
	}
	if err := c.ScheduleClient().GetHandle(ctx, id).Pause(ctx, client.SchedulePauseOptions{Note: note}); err != nil {
		return scheduleErr(id, err)
	}
	return nil
}

// UnpauseSchedule unpauses a schedule.
func UnpauseSchedule(ctx context.Context, c client.Client, id, note string) error {
	if note == "" {
		note = "unpaused with sluice schedule unpause"
	}
	if err := c.ScheduleClient().GetHandle(ctx, id).Unpause(ctx, client.ScheduleUnpauseOptions{Note: note}); err != nil {
		return scheduleErr(id, err)
	}
	return nil
}

// TriggerSchedule starts a run now, its window starting now (to the
// second), with the schedule's overlap policy.
func TriggerSchedule(ctx context.Context, c client.Client, id string) error {
	if err := c.ScheduleClient().GetHandle(ctx, id).Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		return scheduleErr(id, err)
	}
	return nil
}

// BackfillSchedule starts the runs the schedule would have started at its
// times from start to end, both included, as if that time passed now.
// overlap applies to them; unspecified is buffer_all: one run after the
// other.
func BackfillSchedule(ctx context.Context, c client.Client, id string, start, end time.Time, overlap enumspb.ScheduleOverlapPolicy) error {
	if end.Before(start) {
		return fmt.Errorf("backfill %s: --end %s is before --start %s", id, end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if overlap == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		overlap = enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL
	}
	err := c.ScheduleClient().GetHandle(ctx, id).Backfill(ctx, client.ScheduleBackfillOptions{
		Backfill: []client.ScheduleBackfill{{Start: start, End: end, Overlap: overlap}},
	})
	if err != nil {
		return scheduleErr(id, err)
	}
	return nil
}

// DeleteSchedule deletes a schedule. Runs it started keep running.
func DeleteSchedule(ctx context.Context, c client.Client, id string) error {
	if err := c.ScheduleClient().GetHandle(ctx, id).Delete(ctx); err != nil {
		return scheduleErr(id, err)
	}
	return nil
}
