package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

const program = `
name: p
tables:
  - name: t
    columns: [{name: a, type: BIGINT}]
    connectors:
      - name: hist
        labels: [history]
        transport: {name: datagen, config: {plan: [{limit: 3000}]}}
      - name: live
        start_after: history
        transport: {name: datagen, config: {plan: [{limit: 500, fields: {a: {range: [1000000, 2000000]}}}]}}
      - name: manual
        paused: true
        transport: {name: datagen, config: {plan: [{limit: 10}]}}
`

// env returns a test environment that runs the real Ingest activity with
// the builtin transports and a table store in a temporary directory.
func env(t *testing.T) (*testsuite.TestWorkflowEnvironment, string) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	dir := t.TempDir()
	e.RegisterWorkflowWithOptions(workflows.Pipeline, workflow.RegisterOptions{Name: workflows.WorkflowName})
	e.RegisterActivity(&activities.Activities{Registry: builtin.Registry(), DataDir: dir})
	return e, dir
}

func load(t *testing.T) pipeline.Pipeline {
	p, _, err := pipeline.Load([]byte(program), ".yaml", "")
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return *p
}

func query(t *testing.T, e *testsuite.TestWorkflowEnvironment) workflows.PipelineStats {
	v, err := e.QueryWorkflow(workflows.QueryStats)
	require.NoError(t, err)
	var s workflows.PipelineStats
	require.NoError(t, v.Get(&s))
	return s
}

func byName(s workflows.PipelineStats) map[string]workflows.ConnectorStats {
	m := map[string]workflows.ConnectorStats{}
	for _, in := range s.Inputs {
		m[in.EndpointName] = in
	}
	return m
}

type updateResult struct{ err error }

func (u *updateResult) Accept()                   {}
func (u *updateResult) Reject(err error)          { u.err = err }
func (u *updateResult) Complete(_ any, err error) { u.err = errors.Join(u.err, err) }

func TestStartAfterPausedAndUpdates(t *testing.T) {
	e, dir := env(t)
	var checked bool
	bad, ok := &updateResult{}, &updateResult{}
	e.RegisterDelayedCallback(func() {
		s := byName(query(t, e))
		require.True(t, s["t.hist"].Finished)
		require.True(t, s["t.live"].Finished, "live starts once history finished")
		require.Equal(t, int64(500), s["t.live"].Metrics.TotalRecords)
		require.Equal(t, "Paused", s["t.manual"].State, `"paused": true creates the connector Paused`)
		require.Zero(t, s["t.manual"].Metrics.TotalRecords)

		e.UpdateWorkflow(workflows.ConnectorStart, "1", bad, workflows.ConnectorRef{Table: "t", Connector: "nope"})
		e.UpdateWorkflow(workflows.ConnectorStart, "2", ok, workflows.ConnectorRef{Table: "t", Connector: "manual"})
		checked = true
	}, time.Minute)
	e.RegisterDelayedCallback(func() {
		require.ErrorContains(t, bad.err, `table t has no connector "nope"`, "the update's validator rejects an unknown connector")
		require.NoError(t, ok.err)
		require.True(t, byName(query(t, e))["t.manual"].Finished)
		e.SignalWorkflow(workflows.PipelineStop, nil)
	}, 2*time.Minute)
	e.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Pipeline: load(t)})
	require.True(t, e.IsWorkflowCompleted())
	require.NoError(t, e.GetWorkflowError())
	require.True(t, checked)

	// In the table store, every history commit precedes every live commit.
	tbl, err := store.Open(context.Background(), store.Location(dir, "p", "t"), store.Options{})
	require.NoError(t, err)
	commits, err := tbl.Commits(context.Background())
	require.NoError(t, err)
	var lastHist, firstLive int64 = 0, 1 << 62
	rows := map[string]int64{}
	for _, c := range commits {
		rows[c.Connector] += c.Rows
		if c.Connector == "hist" {
			lastHist = max(lastHist, c.Version)
		}
		if c.Connector == "live" {
			firstLive = min(firstLive, c.Version)
		}
	}
	require.Less(t, lastHist, firstLive)
	require.Equal(t, map[string]int64{"hist": 3000, "live": 500, "manual": 10}, rows)
}

func TestPipelinePausedRunsNothing(t *testing.T) {
	e, _ := env(t)
	e.RegisterDelayedCallback(func() {
		s := query(t, e)
		require.Equal(t, "Paused", s.State)
		for _, in := range s.Inputs {
			require.False(t, in.Active, in.EndpointName)
			require.Zero(t, in.Metrics.TotalRecords, in.EndpointName)
		}
		e.SignalWorkflow(workflows.PipelineStart, nil)
	}, time.Minute)
	e.RegisterDelayedCallback(func() {
		s := byName(query(t, e))
		require.True(t, s["t.hist"].Finished)
		require.True(t, s["t.live"].Finished)
		e.SignalWorkflow(workflows.PipelineStop, nil)
	}, 2*time.Minute)
	e.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Pipeline: load(t), Paused: true})
	require.NoError(t, e.GetWorkflowError())
}

func TestPauseResumeFromCheckpoint(t *testing.T) {
	e, dir := env(t)
	p := load(t)
	p.Tables[0].Connectors = p.Tables[0].Connectors[:1]
	p.Tables[0].Connectors[0].Transport.Config = []byte(`{"plan": [{"limit": 40, "rate": 20}]}`)
	p.Tables[0].Connectors[0].MaxBatchSize = 1
	p.StopAtEndOfInput = true
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(workflows.ConnectorPause, workflows.ConnectorRef{Table: "t", Connector: "hist"})
	}, 500*time.Millisecond)
	e.RegisterDelayedCallback(func() {
		s := byName(query(t, e))["t.hist"]
		require.Equal(t, "Paused", s.State)
		require.False(t, s.Finished)
		require.NotEmpty(t, s.Checkpoint)
		e.SignalWorkflow(workflows.ConnectorStart, workflows.ConnectorRef{Table: "t", Connector: "hist"})
	}, time.Minute)
	e.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Pipeline: p})
	require.NoError(t, e.GetWorkflowError())
	var s workflows.PipelineStats
	require.NoError(t, e.GetWorkflowResult(&s))
	require.Equal(t, int64(40), s.Inputs[0].Metrics.TotalRecords)

	tbl, err := store.Open(context.Background(), store.Location(dir, "p", "t"), store.Options{})
	require.NoError(t, err)
	commits, err := tbl.Commits(context.Background())
	require.NoError(t, err)
	var total int64
	for _, c := range commits {
		total += c.Rows
	}
	require.Equal(t, int64(40), total, "paused and resumed from its checkpoint: no record lost or repeated")
}

func TestContinueAsNewKeepsStateAndSignals(t *testing.T) {
	e, _ := env(t)
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(workflows.ConnectorStart, workflows.ConnectorRef{Table: "t", Connector: "manual"})
		e.SignalWorkflow(workflows.ConnectorPause, workflows.ConnectorRef{Table: "t", Connector: "hist"})
	}, time.Minute)
	e.RegisterDelayedCallback(func() {
		e.SetContinueAsNewSuggested(true)
		e.SignalWorkflow(workflows.PipelinePause, nil)
	}, 2*time.Minute)
	e.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Pipeline: load(t), Paused: true})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, e.GetWorkflowError(), &can)
	var next workflows.Input
	require.NoError(t, converterGet(can, &next))
	require.True(t, next.State.Connectors["t.hist"].Paused, "connector.pause sent before continue-as-new is kept")
	require.True(t, next.State.Paused, "pipeline.pause sent before continue-as-new is kept")
	require.False(t, next.State.Connectors["t.manual"].Paused, "connector.start sent before continue-as-new is kept")
	require.True(t, next.State.Connectors["t.live"].Waiting)
	require.Equal(t, "p", next.Pipeline.Name)
}

// panicker is a transport with a bug: it panics where its config says
// ("new", "open" or "read").
type panicker struct{ where string }

func newPanicker(p connectors.Params) (connectors.Source, error) {
	var cfg struct {
		In string `json:"in"`
	}
	_ = json.Unmarshal(p.Config, &cfg)
	if cfg.In == "new" {
		var m map[string]int
		m["boom"]++ // a nil map write
	}
	return &panicker{where: cfg.In}, nil
}

func (s *panicker) Open(context.Context, connectors.Checkpoint) error {
	if s.where == "open" {
		panic("boom in open")
	}
	return nil
}

func (s *panicker) Read(context.Context) (connectors.Batch, error) {
	var values []int
	_ = values[len(s.where)] // index out of range
	return connectors.Batch{}, nil
}

func (s *panicker) Close() error { return nil }

// TestConnectorPanics: a panic in a source (in Read, on the reader
// goroutine, or in Open) fails that connector with a fatal_error naming
// the panic, not the worker; the other connectors run on. A panic while
// building it fails validation with an error.
func TestConnectorPanics(t *testing.T) {
	reg := builtin.Registry()
	require.NoError(t, reg.Register("panicker", newPanicker))
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(workflows.Pipeline, workflow.RegisterOptions{Name: workflows.WorkflowName})
	e.RegisterActivity(&activities.Activities{Registry: reg, DataDir: t.TempDir()})
	p, _, err := pipeline.Load([]byte(`
name: p
tables:
  - name: t
    columns: [{name: a, type: BIGINT}]
    connectors:
      - {name: reader, transport: {name: panicker, config: {in: read}}}
      - {name: opener, transport: {name: panicker, config: {in: open}}}
      - {name: ok, transport: {name: datagen, config: {plan: [{limit: 10}]}}}
`), ".yaml", "")
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, reg))
	e.RegisterDelayedCallback(func() {
		st := byName(query(t, e))
		for _, c := range []string{"t.reader", "t.opener"} {
			require.NotNil(t, st[c].FatalError, c)
			require.Contains(t, *st[c].FatalError, "panicked", c)
			require.Equal(t, "unhealthy", st[c].Health)
		}
		require.Contains(t, *st["t.reader"].FatalError, "index out of range")
		require.Contains(t, *st["t.opener"].FatalError, "boom in open")
		require.True(t, st["t.ok"].Finished)
		require.Equal(t, int64(10), st["t.ok"].Metrics.TotalRecords)
		e.SignalWorkflow(workflows.PipelineStop, nil)
	}, 30*time.Second)
	e.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Pipeline: *p})
	require.NoError(t, e.GetWorkflowError())

	p.Tables[0].Connectors[0].Transport.Config = json.RawMessage(`{"in": "new"}`)
	err = pipeline.Validate(p, reg)
	require.ErrorContains(t, err, "tables[0].connectors[0].transport.config: transport.config panicked: assignment to entry in nil map")
}
