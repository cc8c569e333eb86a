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

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// flightsDelta writes flights-3m.parquet, cut into parts files, as a Delta
// table: the first commits[0] parts in version 0, the next commits[1] in
// version 1, and so on. It returns the table and every part's bytes.
func flightsDelta(t *testing.T, parts int, commits ...int) (*fixture.Delta, [][]byte, [][]string) {
	data, err := fixture.SplitParquet(context.Background(), sharedData(t, "flights-3m.parquet"), parts)
	require.NoError(t, err)
	d, err := fixture.NewDelta(filepath.Join(t.TempDir(), "flights"), flightsArrowSchema(t))
	require.NoError(t, err)
	var paths [][]string
	next := 0
	for _, n := range commits {
		p, err := d.Commit(data[next : next+n])
		require.NoError(t, err)
		paths = append(paths, p)
		next += n
	}
	return d, data, paths
}

func flightsArrowSchema(t *testing.T) *arrow.Schema {
	s, err := loadExample(t, "flights.yaml").Tables[0].Schema()
	require.NoError(t, err)
	return s
}

// partsHash is the checksum of Parquet files' rows, each with weight +1.
func partsHash(t *testing.T, parts ...[]byte) fixture.Hash {
	var h fixture.Hash
	for i, p := range parts {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("%d.parquet", i))
		require.NoError(t, os.WriteFile(path, p, 0o644))
		require.NoError(t, fixture.ReadParquet(context.Background(), path, 1<<16, func(rec arrow.RecordBatch) error {
			h.Add(rec, 5, -1)
			return nil
		}))
	}
	return h
}

// tableHash is the checksum of a table store table's changes.
func tableHash(t *testing.T, dataDir, p, table string) fixture.Hash {
	var h fixture.Hash
	readTableBatches(t, dataDir, p, table, func(rec arrow.RecordBatch) {
		n := int(rec.NumCols()) - 1
		h.Add(rec, n, n)
	})
	return h
}

// flightsDeltaPipeline is the flights example with one connector: the
// Delta table at uri, with the given extra config.
func flightsDeltaPipeline(t *testing.T, uri, extra string) *pipeline.Pipeline {
	p := loadExample(t, "flights.yaml")
	c := &p.Tables[0].Connectors[0]
	p.Tables[0].Connectors = p.Tables[0].Connectors[:1]
	c.Name, c.Format, c.Labels = "delta", nil, nil
	c.Transport = pipeline.Transport{Name: "delta_table_input", Config: json.RawMessage(fmt.Sprintf(`{"uri": %q, %s}`, uri, extra))}
	c.MaxBatchSize = 10_000
	c.MaxQueuedRecords = 40_000
	p.StopAtEndOfInput = true
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// TestDeltaSnapshotAndFollow runs delta_table_input in snapshot_and_follow
// mode while new commits land: an append, a commit that appends and removes
// a file (its rows become deletes), and another append. Each is ingested
// exactly once, and the table ends equal to the Delta table's last version.
func TestDeltaSnapshotAndFollow(t *testing.T) {
	delta.PollInterval = 100 * time.Millisecond
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	d, parts, paths := flightsDelta(t, 10, 2, 1) // versions 0 and 1: 900,000 flights
	p := flightsDeltaPipeline(t, d.Dir, `"mode": "snapshot_and_follow", "end_version": 4`)
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})

	ingested := func(n int64) func() bool {
		return func() bool { return stats(t, c, "flights").GlobalMetrics.TotalInputRecords == n }
	}
	eventually(t, 2*time.Minute, "the snapshot ingested", ingested(900_000))
	_, err := d.Commit(parts[3:4]) // version 2
	require.NoError(t, err)
	eventually(t, time.Minute, "version 2 ingested", ingested(1_200_000))
	eventually(t, 10*time.Second, "waiting for version 3", func() bool {
		var cp delta.Checkpoint
		require.NoError(t, json.Unmarshal(connector(stats(t, c, "flights"), "flights.delta").Checkpoint, &cp))
		return cp == delta.Checkpoint{Phase: delta.PhaseFollow, Version: 3}
	})

	_, err = d.Commit(parts[4:5], paths[0][0]) // version 3: +300,000, -300,000
	require.NoError(t, err)
	_, err = d.Commit(parts[5:6]) // version 4
	require.NoError(t, err)
	final := finish(t, run)

	require.Equal(t, int64(2_100_000), final.GlobalMetrics.TotalInputRecords, "every change once: 900k + 300k + 600k + 300k")
	got := tableHash(t, dataDir, "flights", "flights")
	want := partsHash(t, parts[1:6]...) // version 4: parts 1..5
	require.Equal(t, int64(2_100_000), got.Records)
	require.Equal(t, want.Count, got.Count)
	require.Equal(t, want.Sum, got.Sum, "the table equals the Delta table's version 4")
	st := connector(final, "flights.delta")
	require.True(t, st.Metrics.EndOfInput)
	require.JSONEq(t, `{"phase": "follow", "version": 5, "file": 0, "row": 0}`, string(st.Checkpoint))
}

// TestDeltaCrashDuringSnapshot SIGKILLs a separate worker process three
// times while it reads a 3,000,000-row Delta snapshot (six files, two
// versions); the table store ends with every flight exactly once.
func TestDeltaCrashDuringSnapshot(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	workerBin := buildBinary(t, "worker", t.TempDir())
	d, parts, _ := flightsDelta(t, 6, 4, 2)
	p := flightsDeltaPipeline(t, d.Dir, `"mode": "snapshot"`)
	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 2})
	final := crashRun(t, ts, run, workerBin, dataDir, "flights", "flights", []int{5, 20, 40}, 75)

	want := partsHash(t, parts...)
	got := tableHash(t, dataDir, "flights", "flights")
	require.Equal(t, int64(3_000_000), want.Count)
	require.Equal(t, want, got, "every flight exactly once: count and checksum")
	require.Equal(t, int64(3_000_000), connector(final, "flights.delta").Metrics.TotalRecords)
}

// TestDeltaBackfillThenKafka is Feldera's tutorial: history from a Delta
// table (the topic's first 20,000 messages, two versions), labelled; the
// Kafka connector starts after it at offset 20,000. Everything arrives
// once and no Kafka record is committed before the last Delta record.
func TestDeltaBackfillThenKafka(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	msgs := flightMessages(t, 30_000)
	addr := kafkaCluster(t, "flights", 2)
	produceFlights(t, addr, "flights", 2, msgs, false)

	schema := arrow.NewSchema([]arrow.Field{
		{Name: "delay", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "distance", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "time", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	}, nil)
	d, err := fixture.NewDelta(filepath.Join(t.TempDir(), "history"), schema)
	require.NoError(t, err)
	for _, r := range [][2]int{{0, 12_000}, {12_000, 20_000}} {
		rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, schema, strings.NewReader("["+strings.Join(bytesToStrings(msgs[r[0]:r[1]]), ",")+"]"))
		require.NoError(t, err)
		data, err := fixture.ParquetBytes(rec)
		rec.Release()
		require.NoError(t, err)
		_, err = d.Commit([][]byte{data})
		require.NoError(t, err)
	}
	// Message i went to partition i%2, so the first 20,000 are offsets 0..9,999 of each.
	p := flightsPipeline(t, "handover", fmt.Sprintf(`      - name: history
        labels: [flights.history]
        transport: {name: delta_table_input, config: {uri: %q, mode: snapshot}}
      - name: live
        start_after: [flights.history]
        transport:
          name: kafka_input
          config:
            bootstrap.servers: %q
            topic: flights
            start_from: {offsets: [10000, 10000]}
            enable.partition.eof: true
        format: {name: json}
`, d.Dir, addr))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	final := finish(t, run)

	rows := readTable(t, dataDir, "handover", "flights")
	require.Equal(t, flightKeys(t, msgs), storedKeys(rows), "history plus live, each flight once")
	lastHistory, firstLive := switchOrder(rows, "history")
	require.Less(t, lastHistory, firstLive, "no live record before the last historical one")
	require.Equal(t, int64(20_000), connector(final, "flights.history").Metrics.TotalRecords)
	require.Equal(t, int64(10_000), connector(final, "flights.live").Metrics.TotalRecords)
}

// TestLineitemExample runs examples/lineitem.yaml: the Iceberg snapshot
// labelled as history, then datagen once it is committed.
func TestLineitemExample(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	p := loadExample(t, "lineitem.yaml")
	p.Tables[0].Connectors[0].Transport.Config = json.RawMessage(fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true}`,
		sharedData(t, "iceberg/lineitem_iceberg")))
	p.StopAtEndOfInput = true
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	final := finish(t, run)

	rows := readTable(t, dataDir, "lineitem", "lineitem")
	require.Len(t, rows, 51793+10000)
	var sum int64
	for _, r := range rows {
		if r.conn == "history" {
			sum += r.values[0].(int64)
		}
	}
	require.Equal(t, int64(1553321902), sum, "sum(l_orderkey) of the current snapshot (LAKEHOUSE.md)")
	lastHistory, firstLive := switchOrder(rows, "history")
	require.Less(t, lastHistory, firstLive, "no live row before the last historical one")
	history := connector(final, "lineitem.history")
	require.True(t, history.Metrics.EndOfInput)

	// DuckDB, a reader independent of arrow-go, finds the same rows, every
	// column (decimals, dates, strings) equal, in the files the history
	// connector added (found by replaying the Delta log with DuckDB's JSON
	// reader) and in the Iceberg snapshot's data file.
	files := duckdb(t, fmt.Sprintf(`select filename from read_parquet('%s/data/*.parquet', filename = true) group by filename having count(*) = 51793`,
		sharedData(t, "iceberg/lineitem_iceberg")))
	require.Len(t, files, 1, "the current snapshot's one data file")
	src := fmt.Sprintf("read_parquet('%s')", files[0]["filename"])
	tableDir := filepath.Join(dataDir, "lineitem", "lineitem")
	added := duckdb(t, fmt.Sprintf(`select path from %s where is_add and data_change and connector = 'history' order by path`, duckdbDeltaLog(tableDir)))
	require.NotEmpty(t, added)
	var paths []string
	for _, a := range added {
		paths = append(paths, fmt.Sprintf("'%s/%s'", tableDir, a["path"]))
	}
	store := fmt.Sprintf("(select * exclude (_weight) from read_parquet([%s]))", strings.Join(paths, ", "))
	diff := duckdb(t, fmt.Sprintf(`select (select count(*) from %[1]s) as stored,
		(select count(*) from (select * from %[2]s except all select * from %[1]s)) as missing,
		(select count(*) from (select * from %[1]s except all select * from %[2]s)) as extra,
		(select sum(l_extendedprice)::varchar from %[1]s) as price, (select sum(l_extendedprice)::varchar from %[2]s) as want_price`, store, src))
	require.Equal(t, []map[string]any{{"stored": "51793", "missing": "0", "extra": "0", "price": diff[0]["want_price"], "want_price": diff[0]["want_price"]}}, diff)
	require.JSONEq(t, `{"phase": "snapshot", "snapshot_id": 2354745328521181395, "file": 0, "row": 51793}`, string(history.Checkpoint))
}

// TestS3Pipeline reads two S3 objects (the first fifteenth of
// flights-3m.parquet each) through the whole system, while two more S3
// connectors fail as their users would see it: a missing bucket and a
// prefix with mixed formats are fatal_errors, not retry loops.
func TestS3Pipeline(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	parts, err := fixture.SplitParquet(context.Background(), sharedData(t, "flights-3m.parquet"), 15)
	require.NoError(t, err)
	srv := fixture.NewS3(t)
	srv.Put(t, "lake", "flights/2001-a.parquet", parts[0])
	srv.Put(t, "lake", "flights/2001-b.parquet", parts[1])
	srv.Put(t, "lake", "mixed/a.parquet", parts[2])
	srv.Put(t, "lake", "mixed/b.csv", []byte("2001-01-01 00:00:00,1,2,SFO,LAX\n"))

	p := loadExample(t, "flights.yaml")
	s3cfg := func(bucket, prefix string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"bucket_name": %q, "prefix": %q, %s}`, bucket, prefix, srv.Config()))
	}
	parquet := &pipeline.Format{Name: "parquet"}
	p.Tables[0].Connectors = []pipeline.Connector{
		{Name: "objects", Transport: pipeline.Transport{Name: "s3_input", Config: s3cfg("lake", "flights/")}, Format: parquet},
		{Name: "nobucket", Transport: pipeline.Transport{Name: "s3_input", Config: s3cfg("nowhere", "")}, Format: parquet},
		{Name: "mixed", Transport: pipeline.Transport{Name: "s3_input", Config: s3cfg("lake", "mixed/")}, Format: parquet},
	}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	var s workflows.PipelineStats
	eventually(t, time.Minute, "objects finished, the others failed", func() bool {
		s = stats(t, c, "flights")
		return connector(s, "flights.objects").Finished && connector(s, "flights.nobucket").FatalError != nil && connector(s, "flights.mixed").FatalError != nil
	})
	objects := connector(s, "flights.objects")
	require.Equal(t, int64(400_000), objects.Metrics.TotalRecords)
	require.True(t, objects.Metrics.EndOfInput)
	require.JSONEq(t, `{"key": "flights/2001-b.parquet", "row": 200000, "done": true, "end_key": "flights/2001-b.parquet"}`, string(objects.Checkpoint))
	require.Equal(t, partsHash(t, parts[0], parts[1]), tableHash(t, dataDir, "flights", "flights"))
	nobucket := connector(s, "flights.nobucket")
	require.Contains(t, *nobucket.FatalError, "NoSuchBucket")
	require.Equal(t, "unhealthy", nobucket.Health)
	require.Contains(t, *connector(s, "flights.mixed").FatalError, "s3://lake/mixed/ holds objects that are not parquet: mixed/b.csv (csv)")
	require.NoError(t, sluice.Command(context.Background(), c, "flights", workflows.PipelineStop, nil))
	require.NoError(t, run.Get(context.Background(), nil))
}

// TestLakehouseDeletes follows, through the workflow into the table
// store, tables whose writers deleted rows: the Delta table with deletion
// vectors written by Spark (98 rows left at version 20: 100 records
// minus the vectors' cardinalities, LAKEHOUSE.md), and the Iceberg
// lineitem table from its first snapshot (60,175 rows) across the
// DELETE that rewrote it down to 51,793 rows, whose sum(l_orderkey) is
// LAKEHOUSE.md's 1553321902. The net of every change is the final table.
func TestLakehouseDeletes(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	p, _, err := pipeline.Load([]byte(fmt.Sprintf(`
name: deletes
stop_at_end_of_input: true
tables:
  - name: people
    columns: [{name: id, type: BIGINT}, {name: name, type: VARCHAR}, {name: age, type: DOUBLE}]
    connectors:
      - name: dv
        transport:
          name: delta_table_input
          config: {uri: %q, mode: snapshot_and_follow, version: 0, end_version: 20}
  - name: lineitem
    columns: [{name: l_orderkey, type: BIGINT}, {name: l_linenumber, type: BIGINT}, {name: l_extendedprice, type: "DECIMAL(15,2)"}]
    connectors:
      - name: iceberg
        transport:
          name: iceberg_input
          config: {mode: snapshot_and_follow, metadata_location: %q, allow_moved_paths: true,
                   snapshot_id: 7817332053627255703, end_snapshot_id: 2354745328521181395}
`, sharedData(t, "delta/table_with_deletion_logs"), sharedData(t, "iceberg/lineitem_iceberg"))), ".yaml", "")
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	final := finish(t, startPipeline(t, c, workflows.Input{Pipeline: *p}))
	for _, in := range final.Inputs {
		require.Nil(t, in.FatalError, in.EndpointName)
		require.True(t, in.Metrics.EndOfInput, in.EndpointName)
	}

	people := map[int64]int64{}
	deletes := 0
	for _, r := range readTable(t, dataDir, "deletes", "people") {
		people[r.values[0].(int64)] += r.weight
		if r.weight < 0 {
			deletes++
		}
	}
	people = dropZero(people)
	require.Len(t, people, 98, "100 records minus the deletion vectors' 2 rows")
	for id, w := range people {
		require.Equal(t, int64(1), w, "id %d", id)
	}
	require.Equal(t, 2, deletes, "each deleted row is deleted once, the files not reloaded")

	var net, sum int64
	for _, r := range readTable(t, dataDir, "deletes", "lineitem") {
		net += r.weight
		sum += r.weight * r.values[0].(int64)
	}
	require.Equal(t, int64(51793), net)
	require.Equal(t, int64(1553321902), sum, "sum(l_orderkey) of the current snapshot (LAKEHOUSE.md)")
}
