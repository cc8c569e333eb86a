package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// ErrTypeInvalidPipeline is the ApplicationError type of a Pipeline
// workflow that refuses its input (a malformed name).
const ErrTypeInvalidPipeline = "InvalidPipeline"

// DefaultHistoryLimit is the history length at which the workflow
// continues as new when Temporal has not suggested it earlier.
const DefaultHistoryLimit = 10_000

type running struct {
	future workflow.Future
	cancel workflow.CancelFunc
	finish bool // an output's Deliver that ends once caught up
}

type run struct {
	ctx     workflow.Context
	in      Input
	st      *State
	order   []string // endpoints in declaration order
	conns   map[string]*pipeline.Connector
	tables  map[string]*pipeline.Table
	deps    map[string][]string // endpoint -> endpoints it starts after
	running map[string]*running
	wake    workflow.Channel
	state   string // last upserted search attribute value
	details string // last current details set
}

// index builds the lookups of the pipeline's connectors from r.in.Pipeline
// and gives every connector without one its initial state: Paused when
// its config says so or it has start_after.
func (r *run) index() {
	r.order = nil
	r.conns = map[string]*pipeline.Connector{}
	r.tables = map[string]*pipeline.Table{}
	r.deps = r.in.Pipeline.StartAfter()
	for ti := range r.in.Pipeline.Tables {
		t := &r.in.Pipeline.Tables[ti]
		for ci := range t.Connectors {
			ep := pipeline.Endpoint(t.Name, t.Connectors[ci].Name)
			r.order = append(r.order, ep)
			r.conns[ep] = &t.Connectors[ci]
			r.tables[ep] = t
		}
	}
	for _, ep := range r.order {
		if r.st.Connectors[ep] == nil {
			c := r.conns[ep]
			r.st.Connectors[ep] = &ConnectorState{Paused: c.Paused || len(c.StartAfter) > 0, Waiting: len(c.StartAfter) > 0}
		}
	}
}

// Pipeline is the pipeline workflow. It returns when pipeline.stop has
// been handled and every activity has returned, or, with
// stop_at_end_of_input, once every input connector has finished; the
// result is the final stats.
func Pipeline(ctx workflow.Context, in Input) (PipelineStats, error) {
	// Names become table store paths: refuse "../x" from a workflow
	// started without the loader (SDK, Web UI, temporal CLI).
	if err := pipeline.CheckNames(&in.Pipeline); err != nil {
		return PipelineStats{}, temporal.NewNonRetryableApplicationError("invalid pipeline: "+err.Error(), ErrTypeInvalidPipeline, nil)
	}
	r := &run{
		ctx:     ctx,
		in:      in,
		running: map[string]*running{},
		wake:    workflow.NewBufferedChannel(ctx, 1000),
	}
	r.st = in.State
	if r.st == nil {
		r.st = &State{Paused: in.Paused, Connectors: map[string]*ConnectorState{}}
		if in.Schedule != nil {
			if err := r.scheduled(ctx); err != nil {
				return PipelineStats{}, err
			}
		}
	}
	r.index()
	if err := r.registerHandlers(ctx); err != nil {
		return PipelineStats{}, err
	}
	signalNames := []string{ConnectorStart, ConnectorPause, PipelineStart, PipelinePause, PipelineStop}
	signals := map[string]workflow.ReceiveChannel{}
	for _, name := range signalNames {
		signals[name] = workflow.GetSignalChannel(ctx, name)
	}
	logger := workflow.GetLogger(ctx)
	draining := false
	for {
		r.startAfter()
		r.reconcile(ctx, draining)
		r.publish(ctx)
		if len(r.running) == 0 {
			if r.st.Stopping || (r.in.Pipeline.StopAtEndOfInput && r.allFinished()) {
				// Let update handlers (pipeline.stop waits for this very
				// moment) answer before the workflow completes.
				if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
					return r.stats(), err
				}
				if r.st.Stopping {
					r.publishFinal(ctx, "Stopped")
				} else {
					r.publishFinal(ctx, StateFinished)
				}
				return r.stats(), nil
			}
			if draining {
				// Every activity has returned its checkpoint: apply pending
				// signals, let update handlers finish, and carry on anew.
				r.drainSignals(signals)
				if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
					return r.stats(), err
				}
				next := r.in
				next.State = r.st
				logger.Info("continuing as new", "history_length", workflow.GetInfo(ctx).GetCurrentHistoryLength())
				return PipelineStats{}, workflow.NewContinueAsNewError(ctx, Pipeline, next)
			}
		}
		if !draining && r.shouldContinueAsNew(ctx) {
			draining = true
			continue
		}
		sel := workflow.NewSelector(ctx)
		for _, name := range signalNames { // a fixed order keeps the workflow deterministic
			sel.AddReceive(signals[name], func(c workflow.ReceiveChannel, _ bool) { r.receive(name, c) })
		}
		sel.AddReceive(r.wake, func(c workflow.ReceiveChannel, _ bool) { c.ReceiveAsync(nil) })
		for _, ep := range r.sortedRunning() {
			sel.AddFuture(r.running[ep].future, func(f workflow.Future) { r.done(ctx, ep, f) })
		}
		sel.Select(ctx)
	}
}

func (r *run) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	limit := r.in.HistoryLimit
	if limit <= 0 {
		limit = DefaultHistoryLimit
	}
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= limit
}

func (r *run) sortedRunning() []string {
	eps := make([]string, 0, len(r.running))
	for ep := range r.running {
		eps = append(eps, ep)
	}
	sort.Strings(eps)
	return eps
}

// receive applies one signal. Bad signal input is logged and dropped: a
// signal has nobody to answer.
func (r *run) receive(name string, c workflow.ReceiveChannel) {
	var ref ConnectorRef
	c.Receive(r.ctx, &ref)
	if err := r.apply(name, ref); err != nil {
		workflow.GetLogger(r.ctx).Warn("signal ignored", "signal", name, "error", err)
	}
}

func (r *run) drainSignals(signals map[string]workflow.ReceiveChannel) {
	names := make([]string, 0, len(signals))
	for n := range signals {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for {
			var ref ConnectorRef
			if !signals[name].ReceiveAsync(&ref) {
				break
			}
			_ = r.apply(name, ref)
		}
	}
}

// endpoint resolves a reference to an endpoint name, or an error naming
// what is unknown.
func (r *run) endpoint(ref ConnectorRef) (string, error) {
	t := r.in.Pipeline.Table(ref.Table)
	if t == nil {
		return "", fmt.Errorf("pipeline %s has no table %q", r.in.Pipeline.Name, ref.Table)
	}
	if t.Connector(ref.Connector) == nil {
		return "", fmt.Errorf("table %s has no connector %q", t.Name, ref.Connector)
	}
	return pipeline.Endpoint(t.Name, ref.Connector), nil
}

// apply changes the state for one command; validate first with check.
func (r *run) apply(name string, ref ConnectorRef) error {
	switch name {
	case PipelineStart:
		r.st.Paused = false
	case PipelinePause:
		r.st.Paused = true
	case PipelineStop:
		r.st.Stopping = true
	case ConnectorStart, ConnectorPause:
		ep, err := r.endpoint(ref)
		if err != nil {
			return err
		}
		c := r.st.Connectors[ep]
		if name == ConnectorStart {
			// A manual start overrides start_after and retries a failed connector.
			c.Paused, c.Waiting, c.FatalError = false, false, ""
		} else {
			c.Paused = true
		}
	default:
		return fmt.Errorf("unknown command %q", name)
	}
	return nil
}

// startAfter starts waiting connectors whose labels' connectors have all
// finished.
func (r *run) startAfter() {
	for _, ep := range r.order {
		c := r.st.Connectors[ep]
		if !c.Waiting || len(r.pendingDeps(ep)) > 0 {
			continue
		}
		c.Waiting, c.Paused = false, false
		workflow.GetLogger(r.ctx).Info("start_after satisfied", "connector", ep)
	}
}

// pendingDeps returns the connectors ep still waits for.
func (r *run) pendingDeps(ep string) []string {
	var out []string
	for _, d := range r.deps[ep] {
		if !r.st.Connectors[d].Finished {
			out = append(out, d)
		}
	}
	return out
}

func (r *run) active(ep string) bool {
	c := r.st.Connectors[ep]
	return !r.st.Paused && !r.st.Stopping && !c.Paused && !c.Waiting && !c.Finished && c.FatalError == ""
}

// reconcile starts an activity for each active connector that has none and
// cancels those of connectors that are no longer active.
func (r *run) reconcile(ctx workflow.Context, draining bool) {
	finish := r.inputsFinished()
	for _, ep := range r.order {
		act, run := r.active(ep) && !draining, r.running[ep]
		switch {
		case act && run == nil:
			r.startActivity(ctx, ep)
		case act && run != nil && run.cancel != nil && r.conns[ep].IsOutput() && finish && !run.finish:
			// Every input has finished: stop following and deliver to
			// the end (the canceled Deliver returns, then restarts with
			// Finish).
			run.cancel()
			run.cancel = nil
		case !act && run != nil && run.cancel != nil:
			run.cancel()
			run.cancel = nil // cancel once; the future resolves when the activity has committed and returned
		}
	}
}

func (r *run) startActivity(ctx workflow.Context, ep string) {
	c := r.st.Connectors[ep]
	c.Activations++
	hb := r.in.HeartbeatTimeoutSeconds
	if hb <= 0 {
		hb = 10
	}
	actx, cancel := workflow.WithCancel(ctx)
	output := r.conns[ep].IsOutput()
	summary := "ingest " + ep
	if output {
		summary = "deliver " + ep
	}
	actx = workflow.WithActivityOptions(actx, workflow.ActivityOptions{
		ActivityID:          fmt.Sprintf("%s-%d", ep, c.Activations),
		Summary:             summary,
		StartToCloseTimeout: 30 * 24 * time.Hour,
		HeartbeatTimeout:    time.Duration(hb) * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeConfig, activities.ErrTypeFenced},
		},
	})
	table := *r.tables[ep]
	table.Connectors = nil // the activity needs the columns; its connector comes apart
	in := activities.IngestInput{Pipeline: r.in.Pipeline.Name, Table: table, Connector: *r.conns[ep], Progress: c.Progress}
	if !output {
		in.Writer = pipeline.Writer(in.Connector.Name, r.st.Run, c.Generation)
	}
	var a *activities.Activities
	ref, known := r.st.Tables[table.Name]
	in.TableRef = ref
	if output {
		// Outputs are new: no history holds one, so no version guards.
		r.startOutput(ctx, actx, lctxOptions(actx), ep, in, known, cancel)
		return
	}
	identify := !known && workflow.GetVersion(ctx, "table-identity", workflow.DefaultVersion, 1) >= 1
	resolve := !c.Resolved && c.Progress.Commit == 0 && len(c.Progress.Checkpoint) == 0 &&
		workflow.GetVersion(ctx, "resolve-start", workflow.DefaultVersion, 1) >= 1
	if !resolve && !identify {
		r.running[ep] = &running{future: workflow.ExecuteActivity(actx, a.Ingest, in), cancel: cancel}
		return
	}
	// First activation of the table or the connector: record the table's
	// identity and resolve the start ("latest", a timestamp) to a
	// checkpoint, keeping both in the state before ingesting.
	future, settable := workflow.NewFuture(ctx)
	r.running[ep] = &running{future: future, cancel: cancel}
	lctx := lctxOptions(actx)
	workflow.Go(ctx, func(gctx workflow.Context) {
		if identify {
			if ref, known = r.st.Tables[table.Name]; !known { // another connector of the table may have recorded it meanwhile
				if err := workflow.ExecuteLocalActivity(lctx, a.OpenTable, activities.OpenTableInput{Pipeline: in.Pipeline, Table: table}).Get(gctx, &ref); err != nil {
					settable.Set(nil, err)
					return
				}
				if r.st.Tables == nil {
					r.st.Tables = map[string]activities.TableRef{}
				}
				r.st.Tables[table.Name] = ref
				workflow.GetLogger(gctx).Info("table recorded", "table", table.Name, "id", ref.ID, "location", ref.Location)
			}
			in.TableRef = ref
		}
		if resolve {
			var cp json.RawMessage
			if err := workflow.ExecuteLocalActivity(lctx, a.Resolve, in).Get(gctx, &cp); err != nil {
				settable.Set(nil, err)
				return
			}
			c.Resolved = true
			if len(cp) > 0 && c.Progress.Commit == 0 {
				c.Progress.Checkpoint = cp
				in.Progress.Checkpoint = cp
				workflow.GetLogger(gctx).Info("start resolved", "connector", ep, "checkpoint", string(cp))
			}
		}
		settable.Chain(workflow.ExecuteActivity(actx, a.Ingest, in))
	})
}

// lctxOptions are the options of the local activities that prepare a
// connector's first activation.
func lctxOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{activities.ErrTypeConfig},
		},
	})
}

// startOutput starts an output's Deliver activity, recording its table's
// identity first if no connector of the table has.
func (r *run) startOutput(ctx, actx, lctx workflow.Context, ep string, in activities.IngestInput, known bool, cancel workflow.CancelFunc) {
	var a *activities.Activities
	din := activities.DeliverInput{IngestInput: in, Finish: r.inputsFinished()}
	if known {
		r.running[ep] = &running{future: workflow.ExecuteActivity(actx, a.Deliver, din), cancel: cancel, finish: din.Finish}
		return
	}
	future, settable := workflow.NewFuture(ctx)
	r.running[ep] = &running{future: future, cancel: cancel, finish: din.Finish}
	table := in.Table
	workflow.Go(ctx, func(gctx workflow.Context) {
		ref, known := r.st.Tables[table.Name]
		if !known {
			if err := workflow.ExecuteLocalActivity(lctx, a.OpenTable, activities.OpenTableInput{Pipeline: in.Pipeline, Table: table}).Get(gctx, &ref); err != nil {
				settable.Set(nil, err)
				return
			}
			if r.st.Tables == nil {
				r.st.Tables = map[string]activities.TableRef{}
			}
			r.st.Tables[table.Name] = ref
			workflow.GetLogger(gctx).Info("table recorded", "table", table.Name, "id", ref.ID, "location", ref.Location)
		}
		din.TableRef = ref
		settable.Chain(workflow.ExecuteActivity(actx, a.Deliver, din))
	})
}

// inputsFinished reports whether the pipeline has input connectors and
// every one has finished: the tables will not change any more, so
// outputs deliver to the end and finish.
func (r *run) inputsFinished() bool {
	n := 0
	for _, ep := range r.order {
		if r.conns[ep].IsOutput() {
			continue
		}
		n++
		if !r.st.Connectors[ep].Finished {
			return false
		}
	}
	return n > 0
}

// done handles an Ingest activity's end.
func (r *run) done(ctx workflow.Context, ep string, f workflow.Future) {
	// cancel is cleared once the workflow asked the activity to stop.
	stopRequested := r.running[ep] != nil && r.running[ep].cancel == nil
	delete(r.running, ep)
	c := r.st.Connectors[ep]
	var p activities.Progress
	err := f.Get(ctx, &p)
	var canceled *temporal.CanceledError
	var timeout *temporal.TimeoutError
	switch {
	case stopRequested && errors.As(err, &timeout):
		// A pause, stop or continue-as-new reached a dead worker: the
		// server does not retry an activity whose cancellation was
		// requested, so it times out. That is the cancellation; the next
		// start resumes from what the table holds.
		workflow.GetLogger(ctx).Warn("connector stopped while its worker was gone", "connector", ep)
	case err == nil:
		if p.Commit >= c.Progress.Commit {
			c.Progress = p
		}
		if p.Metrics.EndOfInput && p.Metrics.BufferedRecords == 0 {
			c.Finished = true
			workflow.GetLogger(ctx).Info("connector finished", "connector", ep, "records", p.Metrics.TotalRecords)
		}
	case errors.As(err, &canceled):
		// Canceled before it ran: its progress is unchanged.
	default:
		var app *temporal.ApplicationError
		msg := err.Error()
		if errors.As(err, &app) {
			msg = app.Message() // the failure itself, not its causes again
		}
		c.FatalError = msg
		workflow.GetLogger(ctx).Error("connector failed", "connector", ep, "error", msg)
	}
}

func (r *run) allFinished() bool {
	for _, ep := range r.order {
		if !r.st.Connectors[ep].Finished {
			return false
		}
	}
	return len(r.order) > 0
}

func (r *run) pipelineState() string {
	switch {
	case r.st.Stopping:
		return "Stopping"
	case r.st.Paused:
		return StatePaused
	}
	return StateRunning
}

func (r *run) connectorStats(ep string) ConnectorStats {
	c := r.st.Connectors[ep]
	s := ConnectorStats{
		EndpointName: ep,
		Config:       *r.conns[ep],
		Paused:       c.Paused,
		State:        r.connectorState(ep),
		Active:       r.active(ep),
		Finished:     c.Finished,
		Metrics:      c.Progress.Metrics,
		ParseErrors:  c.Progress.ParseErrors,
		Health:       "healthy",
		Checkpoint:   c.Progress.Checkpoint,
	}
	if r.conns[ep].IsOutput() {
		s.OutputMetrics = &activities.OutputMetrics{DeliveredVersion: -1}
		if c.Progress.Output != nil {
			o := *c.Progress.Output
			s.OutputMetrics = &o
		}
	}
	if c.Waiting {
		s.WaitingFor = []string(r.conns[ep].StartAfter)
	}
	if c.FatalError != "" {
		msg := c.FatalError
		s.FatalError, s.Health = &msg, "unhealthy"
	}
	if s.ParseErrors == nil {
		s.ParseErrors = []connectors.ParseError{}
	}
	return s
}

func (r *run) stats() PipelineStats {
	s := PipelineStats{Name: r.in.Pipeline.Name, State: r.pipelineState()}
	s.Outputs = []ConnectorStats{}
	for _, ep := range r.order {
		cs := r.connectorStats(ep)
		if cs.OutputMetrics != nil {
			s.Outputs = append(s.Outputs, cs)
			s.GlobalMetrics.TotalOutputRecords += cs.OutputMetrics.TransmittedRecords
			continue
		}
		s.Inputs = append(s.Inputs, cs)
		s.GlobalMetrics.TotalInputRecords += cs.Metrics.TotalRecords
		s.GlobalMetrics.TotalInputBytes += cs.Metrics.TotalBytes
		s.GlobalMetrics.BufferedInputRecords += cs.Metrics.BufferedRecords
		s.GlobalMetrics.NumParseErrors += cs.Metrics.NumParseErrors
	}
	s.GlobalMetrics.PipelineComplete = r.allFinished()
	return s
}
