package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// writeIDs writes JSON lines {"id": from} .. {"id": to-1} and returns the
// byte offset at which each line starts.
func writeIDs(t *testing.T, path string, from, to int) []int64 {
	var b strings.Builder
	var offsets []int64
	for i := from; i < to; i++ {
		offsets = append(offsets, int64(b.Len()))
		fmt.Fprintf(&b, "{\"id\": %d}\n", i)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return offsets
}

// ctlPipeline is a pipeline of one table of ids with the given connectors.
func ctlPipeline(t *testing.T, name, connectorsYAML string) *pipeline.Pipeline {
	y := fmt.Sprintf("name: %s\ntables:\n  - name: events\n    columns: [{name: id, type: BIGINT}]\n    connectors:\n%s", name, connectorsYAML)
	p, _, err := pipeline.Load([]byte(y), ".yaml", name)
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// idCounts nets the table's rows by id, per writer (the connector name and
// its generation).
func idCounts(t *testing.T, dataDir, name string) map[string]map[int64]int {
	out := map[string]map[int64]int{}
	for _, r := range readTable(t, dataDir, name, "events") {
		conn := r.conn
		if out[conn] == nil {
			out[conn] = map[int64]int{}
		}
		out[conn][r.values[0].(int64)] += int(r.weight)
	}
	return out
}

func update(t *testing.T, c client.Client, name, upd string, arg any) (workflows.ConnectorStats, error) {
	var s workflows.ConnectorStats
	err := sluice.Update(context.Background(), c, name, upd, arg, &s)
	return s, err
}

// TestConnectorOffsets: a file and a Kafka connector, finished, are
// repositioned with set-checkpoint and reset (KIP-875's offsets API) and
// re-ingest exactly from there; a running connector's config cannot be
// updated; update-config of a finished one, with --reset, reads its new
// input from the beginning.
func TestConnectorOffsets(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	dir := t.TempDir()
	offsets := writeIDs(t, filepath.Join(dir, "a.json"), 0, 100)
	writeIDs(t, filepath.Join(dir, "b.json"), 1000, 1010)

	addr := kafkaCluster(t, "ids", 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	for i := 500; i < 600; i++ {
		require.NoError(t, cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ids", Value: fmt.Appendf(nil, `{"id": %d}`, i)}).FirstErr())
	}
	cl.Close()

	name := "offsets"
	p := ctlPipeline(t, name, fmt.Sprintf(`      - name: file
        transport: {name: file_input, config: {path: %q}}
        format: {name: json}
      - name: kafka
        transport: {name: kafka_input, config: {bootstrap.servers: %q, topic: ids, start_from: earliest, enable.partition.eof: "true"}}
        format: {name: json}
      - name: live
        transport: {name: datagen, config: {seed: 1, plan: [{rate: 5}]}}
`, filepath.Join(dir, "a.json"), addr))
	ctx := context.Background()
	_, err = sluice.Start(ctx, c, p, sluice.StartOptions{})
	require.NoError(t, err)
	finished := func(ep string) func() bool {
		return func() bool {
			s := connector(stats(t, c, name), ep)
			return s.Finished && s.State == workflows.StateFinished
		}
	}
	eventually(t, time.Minute, "file and kafka finish", func() bool { return finished("events.file")() && finished("events.kafka")() })

	// A running connector cannot be repositioned or reconfigured.
	eventually(t, 30*time.Second, "live runs", func() bool { return connector(stats(t, c, name), "events.live").State == workflows.StateRunning })
	_, err = update(t, c, name, workflows.ConnectorUpdateConfig, workflows.ConfigInput{Table: "events", Connector: "live", Config: *p.Tables[0].Connector("live")})
	require.ErrorContains(t, err, "connector events.live is Running: pause it first")
	_, err = update(t, c, name, workflows.ConnectorReset, workflows.ConnectorRef{Table: "events", Connector: "live"})
	require.ErrorContains(t, err, "pause it first")

	// The file connector's checkpoint is its byte offset: set it to line 60.
	s, err := sluice.ConnectorStats(ctx, c, name, "events", "file")
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"offset": %d}`, offsets[99]+int64(len("{\"id\": 99}\n"))), string(s.Checkpoint))
	s, err = update(t, c, name, workflows.ConnectorSetCheckpoint, workflows.CheckpointInput{Table: "events", Connector: "file", Checkpoint: fmt.Appendf(nil, `{"offset": %d}`, offsets[60])})
	require.NoError(t, err)
	require.Equal(t, workflows.StatePaused, s.State, "set-checkpoint leaves it Paused")
	require.Equal(t, int64(0), s.Metrics.TotalRecords)
	_, err = update(t, c, name, workflows.ConnectorStart, workflows.ConnectorRef{Table: "events", Connector: "file"})
	require.NoError(t, err)
	eventually(t, time.Minute, "file finishes again", finished("events.file"))
	require.Equal(t, int64(40), connector(stats(t, c, name), "events.file").Metrics.TotalRecords)

	// Kafka: reset re-reads the topic from the beginning; then a
	// checkpoint at offset 90 re-reads the last ten.
	s, err = update(t, c, name, workflows.ConnectorReset, workflows.ConnectorRef{Table: "events", Connector: "kafka"})
	require.NoError(t, err)
	require.Equal(t, workflows.StatePaused, s.State)
	_, err = update(t, c, name, workflows.ConnectorStart, workflows.ConnectorRef{Table: "events", Connector: "kafka"})
	require.NoError(t, err)
	eventually(t, time.Minute, "kafka finishes after reset", finished("events.kafka"))
	cp := connector(stats(t, c, name), "events.kafka").Checkpoint
	var kcp map[string]any
	require.NoError(t, json.Unmarshal(cp, &kcp))
	kcp["offsets"] = map[string]map[string]int64{"ids": {"0": 90}}
	cp, _ = json.Marshal(kcp)
	_, err = update(t, c, name, workflows.ConnectorSetCheckpoint, workflows.CheckpointInput{Table: "events", Connector: "kafka", Checkpoint: cp})
	require.NoError(t, err)
	_, err = update(t, c, name, workflows.ConnectorStart, workflows.ConnectorRef{Table: "events", Connector: "kafka"})
	require.NoError(t, err)
	eventually(t, time.Minute, "kafka finishes after set-checkpoint", finished("events.kafka"))

	// update-config with reset: the file connector reads b.json whole.
	cfg := *p.Tables[0].Connector("file")
	cfg.Transport.Config = json.RawMessage(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "b.json")))
	_, err = update(t, c, name, workflows.ConnectorUpdateConfig, workflows.ConfigInput{Table: "events", Connector: "file", Config: cfg, Reset: true})
	require.NoError(t, err)
	bad := cfg
	bad.Transport.Config = json.RawMessage(`{"path": ""}`)
	_, err = update(t, c, name, workflows.ConnectorUpdateConfig, workflows.ConfigInput{Table: "events", Connector: "file", Config: bad})
	require.ErrorContains(t, err, "transport.config.path", "validated like a pipeline file, with the field's path")
	s, err = update(t, c, name, workflows.ConnectorStart, workflows.ConnectorRef{Table: "events", Connector: "file"})
	require.NoError(t, err)
	require.Contains(t, string(mustJSON(t, s.Config)), "b.json", "the stats show the new config")
	eventually(t, time.Minute, "file finishes with its new config", finished("events.file"))

	got := idCounts(t, dataDir, name)
	want := func(from, to int) map[int64]int {
		m := map[int64]int{}
		for i := from; i < to; i++ {
			m[int64(i)] = 1
		}
		return m
	}
	require.Equal(t, want(0, 100), got["file"], "the first pass read every line once")
	require.Equal(t, want(60, 100), got["file#1"], "set-checkpoint re-read from line 60 exactly")
	require.Equal(t, want(1000, 1010), got["file#2"], "update-config --reset read the new file from its start")
	require.Equal(t, want(500, 600), got["kafka"])
	require.Equal(t, want(500, 600), got["kafka#1"], "reset re-read the topic from the beginning")
	require.Equal(t, want(590, 600), got["kafka#2"], "set-checkpoint re-read from offset 90 exactly")

	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelineStop, nil))
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestChangedDefinition: sluice run of a changed pipeline file applies
// added and removed connectors and the config of connectors that are
// not running, and refuses, naming them, the changes it cannot apply.
func TestChangedDefinition(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	ctx := context.Background()
	name := "changes"
	p := ctlPipeline(t, name, `      - name: done
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 10}]}}
      - name: later
        paused: true
        transport: {name: datagen, config: {seed: 2, plan: [{limit: 10}]}}
      - name: live
        transport: {name: datagen, config: {seed: 3, plan: [{rate: 5}]}}
`)
	_, err := sluice.Start(ctx, c, p, sluice.StartOptions{})
	require.NoError(t, err)
	eventually(t, time.Minute, "done finishes", func() bool { return connector(stats(t, c, name), "events.done").Finished })

	ch, err := sluice.Apply(ctx, c, p)
	require.NoError(t, err)
	require.True(t, ch.Empty(), "the same definition changes nothing")

	// A running connector's config and a table's columns cannot change.
	changed := ctlPipeline(t, name, `      - name: done
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 10}]}}
      - name: later
        paused: true
        transport: {name: datagen, config: {seed: 2, plan: [{limit: 10}]}}
      - name: live
        transport: {name: datagen, config: {seed: 3, plan: [{rate: 50}]}}
`)
	_, err = sluice.Apply(ctx, c, changed)
	require.ErrorContains(t, err, "connector events.live: its config changed while it is Running")
	cols := ctlPipeline(t, name, `      - name: done
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 10}]}}
`)
	cols.Tables[0].Columns = append(cols.Tables[0].Columns, pipeline.Column{Name: "extra", Type: "INT"})
	_, err = sluice.Apply(ctx, c, cols)
	require.ErrorContains(t, err, "table events: its columns or primary key changed")
	require.ErrorContains(t, err, "connector events.live: removed while it is Running")

	// Added, removed (finished) and changed (paused) connectors apply.
	next := ctlPipeline(t, name, `      - name: later
        paused: true
        transport: {name: datagen, config: {seed: 2, plan: [{limit: 20}]}}
      - name: live
        transport: {name: datagen, config: {seed: 3, plan: [{rate: 5}]}}
      - name: added
        transport: {name: datagen, config: {seed: 4, plan: [{limit: 7}]}}
`)
	ch, err = sluice.Apply(ctx, c, next)
	require.NoError(t, err)
	require.Equal(t, workflows.Changes{Added: []string{"events.added"}, Removed: []string{"events.done"}, Changed: []string{"events.later"}}, ch)
	eventually(t, time.Minute, "the added connector runs and finishes", func() bool { return connector(stats(t, c, name), "events.added").Finished })
	s := stats(t, c, name)
	require.Len(t, s.Inputs, 3, "the removed connector is gone from the stats")
	require.NoError(t, sluice.Command(ctx, c, name, workflows.ConnectorStart, &workflows.ConnectorRef{Table: "events", Connector: "later"}))
	eventually(t, time.Minute, "later runs its new config", func() bool { return connector(stats(t, c, name), "events.later").Metrics.TotalRecords == 20 })
	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelineStop, nil))
}

// TestPipelineClear: clear refuses a running pipeline; once it is
// stopped it deletes its tables, and the next run ingests from the
// beginning again.
func TestPipelineClear(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	ctx := context.Background()
	name := "clear"
	p := ctlPipeline(t, name, `      - name: gen
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 25}]}}
`)
	_, err := sluice.Start(ctx, c, p, sluice.StartOptions{})
	require.NoError(t, err)
	eventually(t, time.Minute, "gen finishes", func() bool { return connector(stats(t, c, name), "events.gen").Finished })
	_, err = sluice.Clear(ctx, c, name, dataDir, store.Options{})
	require.ErrorIs(t, err, sluice.ErrRunning)
	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelineStop, nil))
	eventually(t, 30*time.Second, "the workflow completes", func() bool {
		_, err := sluice.Clear(ctx, c, name, dataDir, store.Options{})
		return err == nil
	})
	_, err = os.Stat(store.Location(dataDir, name, "events"))
	require.True(t, os.IsNotExist(err), "the table is gone")

	// Run again to the end: everything is ingested again, once.
	run, err := sluice.Start(ctx, c, p, sluice.StartOptions{StopAtEndOfInput: true})
	require.NoError(t, err)
	final := finish(t, run)
	require.Equal(t, workflows.StateFinished, connector(final, "events.gen").State)
	require.Len(t, readTable(t, dataDir, name, "events"), 25)
}
