package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// weatherRows is the number of records of ../shared/data/seattle-weather.csv.
const weatherRows = 1461

// weatherColumns are its columns, as a pipeline file's JSON.
const weatherColumns = `[
      {"name": "date", "type": "VARCHAR"}, {"name": "precipitation", "type": "DOUBLE"},
      {"name": "temp_max", "type": "DOUBLE"}, {"name": "temp_min", "type": "DOUBLE"},
      {"name": "wind", "type": "DOUBLE"}, {"name": "weather", "type": "VARCHAR"}]`

// weatherPipeline writes a pipeline file reading seattle-weather.csv once
// (bounded) into dir and returns its path. transport overrides the
// file_input config.
func weatherPipeline(t *testing.T, dir, name, transport string) string {
	if transport == "" {
		transport = fmt.Sprintf(`{"path": %q}`, sharedData(t, "seattle-weather.csv"))
	}
	p := fmt.Sprintf(`{
  "name": %q,
  "tables": [{
    "name": "weather",
    "columns": %s,
    "connectors": [{"name": "csv", "transport": {"name": "file_input", "config": %s},
                    "format": {"name": "csv", "config": {"headers": true}}}]
  }]
}`, name, weatherColumns, transport)
	path := filepath.Join(dir, name+".json")
	require.NoError(t, os.WriteFile(path, []byte(p), 0o644))
	return path
}

// scheduleRuns waits until schedule id has started n runs and each of the
// first n has completed, and returns them (oldest first).
func scheduleRuns(t *testing.T, c client.Client, id string, n int) []sluice.ScheduleRun {
	t.Helper()
	var runs []sluice.ScheduleRun
	eventually(t, time.Minute, fmt.Sprintf("schedule %s starts %d runs", id, n), func() bool {
		s, err := sluice.DescribeSchedule(context.Background(), c, id)
		require.NoError(t, err)
		runs = s.RecentRuns
		return len(runs) >= n && runs[n-1].WorkflowID != ""
	})
	for _, r := range runs[:n] {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var final workflows.PipelineStats
		err := c.GetWorkflow(ctx, r.WorkflowID, r.RunID).Get(ctx, &final)
		cancel()
		require.NoError(t, err, "run %s", r.WorkflowID)
		require.True(t, final.GlobalMetrics.PipelineComplete, "run %s completes once its inputs finished: %+v", r.WorkflowID, final)
	}
	return runs[:n]
}

// netRows returns each distinct row of a table with its net weight.
func netRows(t *testing.T, dataDir, p, table string) map[string]int64 {
	out := map[string]int64{}
	for _, r := range readTable(t, dataDir, p, table) {
		k, err := json.Marshal(r.values)
		require.NoError(t, err)
		out[string(k)] += r.weight
	}
	return out
}

// TestScheduleCommands drives `sluice schedule` as a user would: create
// (and the errors create reports before anything is created), describe,
// pause, unpause, list (also with the temporal CLI), delete.
func TestScheduleCommands(t *testing.T) {
	ts, c := newServer(t)
	ctx := context.Background()
	// Sluice's search attributes, as its dev server registers them: the
	// schedule's action then carries SluicePipeline.
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: ts.GetDefaultNamespace(),
		SearchAttributes: map[string]enumspb.IndexedValueType{
			workflows.SearchAttributePipeline: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			workflows.SearchAttributeState:    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		},
	})
	require.NoError(t, err)
	eventually(t, 30*time.Second, "search attributes registered", func() bool { return sluice.HasSearchAttributes(ctx, c, ts.GetDefaultNamespace()) })

	dir := t.TempDir()
	sluiceBin := buildBinary(t, "starter", t.TempDir())
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(sluiceBin, args...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+ts.GetDefaultNamespace())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	describe := func(name string) sluice.ScheduleStatus {
		out, err := cli("schedule", "describe", name, "--json")
		require.NoError(t, err, out)
		var s sluice.ScheduleStatus
		require.NoError(t, json.Unmarshal([]byte(out), &s), out)
		return s
	}
	weather := weatherPipeline(t, dir, "weather", "")

	// Errors found before anything is created, each with its path.
	follow := weatherPipeline(t, dir, "followed", fmt.Sprintf(`{"path": %q, "follow": true}`, sharedData(t, "seattle-weather.csv")))
	out, err := cli("schedule", "create", "f", follow, "--every", "1h")
	require.Error(t, err)
	require.Contains(t, out, "tables[0].connectors[0]: connector weather.csv (file_input) never reaches end of input, but a scheduled run must end")
	cron := weatherPipeline(t, dir, "cron", `{"path": "/data/${schedule:end_time|2006-01-02}.csv"}`)
	out, err = cli("schedule", "create", "c", cron, "--cron", "0 3 * * *")
	require.Error(t, err)
	require.Contains(t, out, "tables[0].connectors[0].transport.config.path: ${schedule:end_time|2006-01-02}: end_time needs the schedule's interval (--every)")
	bad := weatherPipeline(t, dir, "bad", `{"path": "/data/${schedule:start_time|yyyy-MM-dd}/${schedule:day}.csv"}`)
	out, err = cli("schedule", "create", "b", bad, "--every", "24h")
	require.Error(t, err)
	require.Contains(t, out, `tables[0].connectors[0].transport.config.path: ${schedule:start_time|yyyy-MM-dd}: layout "yyyy-MM-dd"`)
	require.Contains(t, out, `${schedule:day}: unknown placeholder "day"`)
	out, err = cli("schedule", "create", "x", weather)
	require.Error(t, err)
	require.Contains(t, out, "--cron EXPR or --every DURATION")
	out, err = cli("schedule", "create", "x", weather, "--every", "1h", "--overlap", "sometimes")
	require.Error(t, err)
	require.Contains(t, out, `unknown overlap policy "sometimes"`)
	list, err := sluice.ListSchedules(ctx, c)
	require.NoError(t, err)
	require.Empty(t, list, "nothing was created")

	// create, describe
	out, err = cli("schedule", "create", "nightly", weather, "--every", "24h", "--note", "weather, every night")
	require.NoError(t, err, out)
	require.Contains(t, out, "created schedule nightly: pipeline weather, every 24h0m0s, overlap skip")
	s := describe("nightly")
	require.Equal(t, "weather", s.Pipeline)
	require.Equal(t, "24h0m0s", s.Every)
	require.Equal(t, "skip", s.Overlap)
	require.False(t, s.Paused)
	require.Equal(t, "weather, every night", s.Note)
	require.Equal(t, "pipeline-weather", s.WorkflowID)
	require.Equal(t, sluice.DefaultTaskQueue, s.TaskQueue)
	require.NotEmpty(t, s.NextRuns)
	require.True(t, s.NextRuns[0].After(time.Now()))
	require.Equal(t, s.NextRuns[0], s.NextRuns[0].Truncate(24*time.Hour), "runs at 00:00 UTC")
	out, err = cli("schedule", "create", "nightly", weather, "--every", "24h")
	require.Error(t, err)
	require.Contains(t, out, "schedule nightly exists already")

	// The action starts the Pipeline workflow with a bounded backfill's input.
	d, err := c.ScheduleClient().GetHandle(ctx, "nightly").Describe(ctx)
	require.NoError(t, err)
	action := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	require.Equal(t, workflows.WorkflowName, action.Workflow)
	require.Equal(t, "pipeline-weather", action.ID)
	v, ok := action.TypedSearchAttributes.GetKeyword(temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttributePipeline))
	require.True(t, ok, "the action sets SluicePipeline")
	require.Equal(t, "weather", v)
	require.Len(t, action.Args, 1)
	var in workflows.Input
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(action.Args[0].(*commonpb.Payload), &in))
	require.True(t, in.Pipeline.StopAtEndOfInput, "each run completes once its inputs finished")
	require.Equal(t, &workflows.ScheduleInput{ID: "nightly", EverySeconds: 86400}, in.Schedule)
	require.True(t, in.SearchAttributes)
	require.Equal(t, "weather", in.Pipeline.Name)

	// pause, unpause
	out, err = cli("schedule", "pause", "nightly", "--note", "maintenance")
	require.NoError(t, err, out)
	s = describe("nightly")
	require.True(t, s.Paused)
	require.Equal(t, "maintenance", s.Note)
	out, err = cli("schedule", "describe", "nightly")
	require.NoError(t, err, out)
	require.Contains(t, out, "state:       paused")
	require.Contains(t, out, "note:        maintenance")
	out, err = cli("schedule", "unpause", "nightly")
	require.NoError(t, err, out)
	require.False(t, describe("nightly").Paused)

	// A cron schedule, created paused.
	out, err = cli("schedule", "create", "hourly", weather, "--cron", "0 * * * *", "--paused", "--overlap", "buffer_one")
	require.NoError(t, err, out)
	s = describe("hourly")
	require.Equal(t, "cron 0 * * * *", s.Spec)
	require.True(t, s.Paused)
	require.Equal(t, "buffer_one", s.Overlap)

	// list: Sluice's and the temporal CLI's (schedules are listed from the
	// visibility store, which may lag a moment).
	eventually(t, 30*time.Second, "sluice schedule list shows both", func() bool {
		out, err := cli("schedule", "list")
		require.NoError(t, err, out)
		return strings.Contains(out, "nightly") && strings.Contains(out, "hourly")
	})
	out, err = cli("schedule", "list")
	require.NoError(t, err, out)
	require.Regexp(t, `nightly\s+weather\s+active`, out)
	require.Regexp(t, `hourly\s+weather\s+paused`, out)
	t.Run("temporal CLI", func(t *testing.T) {
		temporal := temporalCLI(t)
		eventually(t, 30*time.Second, "temporal schedule list shows nightly", func() bool {
			out, err := exec.Command(temporal, "schedule", "list", "--address", ts.GetFrontendHostPort(), "--namespace", ts.GetDefaultNamespace()).CombinedOutput()
			require.NoError(t, err, string(out))
			return strings.Contains(string(out), "nightly")
		})
	})

	// delete
	out, err = cli("schedule", "delete", "nightly")
	require.NoError(t, err, out)
	out, err = cli("schedule", "describe", "nightly")
	require.Error(t, err)
	require.Contains(t, out, "no such schedule: nightly")
	out, err = cli("schedule", "trigger", "nightly")
	require.Error(t, err)
	require.Contains(t, out, "no such schedule: nightly")
}

// TestScheduleTriggerTwice triggers a schedule over a bounded pipeline
// twice: each run completes and ingests the whole input, so the table
// holds every row twice.
func TestScheduleTriggerTwice(t *testing.T) {
	_, c := newServer(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	p, _, err := sluice.LoadScheduled(weatherPipeline(t, t.TempDir(), "weather", ""), nil, pipeline.Window{Start: time.Now()})
	require.NoError(t, err)
	_, err = sluice.CreateSchedule(ctx, c, p, sluice.ScheduleOptions{ID: "weather-daily", Every: 24 * time.Hour})
	require.NoError(t, err)

	require.NoError(t, sluice.TriggerSchedule(ctx, c, "weather-daily"))
	first := scheduleRuns(t, c, "weather-daily", 1)[0]
	require.True(t, strings.HasPrefix(first.WorkflowID, "pipeline-weather-"), first.WorkflowID)
	require.Equal(t, int64(weatherRows), sumWeights(readTable(t, dataDir, "weather", "weather")))

	// A trigger's window starts at its second: the next one is another window.
	time.Sleep(time.Until(first.ScheduledTime.Add(time.Second)))
	require.NoError(t, sluice.TriggerSchedule(ctx, c, "weather-daily"))
	runs := scheduleRuns(t, c, "weather-daily", 2)
	require.NotEqual(t, runs[0].WorkflowID, runs[1].WorkflowID)
	require.Equal(t, int64(2*weatherRows), sumWeights(readTable(t, dataDir, "weather", "weather")),
		"each triggered run ingests the whole input (needs the workflow to give scheduled runs their own identity)")
	s, err := sluice.DescribeSchedule(ctx, c, "weather-daily")
	require.NoError(t, err)
	for _, r := range s.RecentRuns {
		require.Equal(t, "Completed", r.Status, r.WorkflowID)
	}
}

func sumWeights(rows []storedRow) int64 {
	var n int64
	for _, r := range rows {
		n += r.weight
	}
	return n
}

// TestScheduleBackfillWindows backfills two past days of a daily schedule
// whose file_input path names the day with ${schedule:start_time|2006-01-02}:
// each day's run reads its own file; backfilling a day again adds nothing.
func TestScheduleBackfillWindows(t *testing.T) {
	_, c := newServer(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	in := t.TempDir()
	days := map[string]int{"2026-01-01": 3, "2026-01-02": 5}
	for day, n := range days {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "%s,%d\n", day, i)
		}
		require.NoError(t, os.WriteFile(filepath.Join(in, "events-"+day+".csv"), []byte(b.String()), 0o644))
	}
	file := filepath.Join(t.TempDir(), "events.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`name: events
tables:
  - name: events
    columns: [{name: day, type: VARCHAR}, {name: "n", type: INT}]
    connectors:
      - name: daily
        transport:
          name: file_input
          config: {path: "`+in+`/events-${schedule:start_time|2006-01-02}.csv"}
        format: {name: csv}
`), 0o644))
	o := sluice.ScheduleOptions{ID: "events-daily", Every: 24 * time.Hour, Paused: true}
	// Validated with the next day's window, the file need not exist yet.
	p, _, err := sluice.LoadScheduled(file, nil, sluice.SampleWindow(o, time.Now()))
	require.NoError(t, err)
	require.True(t, pipeline.HasSchedulePlaceholders(p), "the pipeline keeps its placeholders")
	_, err = sluice.CreateSchedule(ctx, c, p, o)
	require.NoError(t, err)

	// Both ends included: the windows of January 1 and 2, one after the
	// other, while the schedule is paused.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, sluice.BackfillSchedule(ctx, c, "events-daily", start, start.Add(24*time.Hour), enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED))
	runs := scheduleRuns(t, c, "events-daily", 2)
	require.Equal(t, "pipeline-events-2026-01-01T00:00:00Z", runs[0].WorkflowID)
	require.Equal(t, "pipeline-events-2026-01-02T00:00:00Z", runs[1].WorkflowID)
	want := map[string]int64{}
	for day, n := range days {
		for i := 1; i <= n; i++ {
			want[fmt.Sprintf(`[%q,%d]`, day, i)] = 1
		}
	}
	require.Equal(t, want, netRows(t, dataDir, "events", "events"), "each window's run reads its own day's file, whole")

	// The same window again: a run, but no row twice.
	require.NoError(t, sluice.BackfillSchedule(ctx, c, "events-daily", start, start, 0))
	runs = scheduleRuns(t, c, "events-daily", 3)
	require.Equal(t, "pipeline-events-2026-01-01T00:00:00Z", runs[2].WorkflowID)
	require.Equal(t, want, netRows(t, dataDir, "events", "events"), "backfilling a window again must not duplicate its rows")

	s, err := sluice.DescribeSchedule(ctx, c, "events-daily")
	require.NoError(t, err)
	require.True(t, s.Paused)
	require.NoError(t, sluice.DeleteSchedule(ctx, c, "events-daily"))
	_, err = sluice.DescribeSchedule(ctx, c, "events-daily")
	require.ErrorIs(t, err, sluice.ErrScheduleNotFound)
}
