package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
)

// The writer process of TestConcurrentWriters: SLUICE_STORE_WRITER is
// "location connector epoch target".
func TestMain(m *testing.M) {
	if spec := os.Getenv("SLUICE_STORE_WRITER"); spec != "" {
		f := strings.Fields(spec)
		epoch, _ := strconv.ParseInt(f[2], 10, 64)
		target, _ := strconv.ParseInt(f[3], 10, 64)
		if err := writeUntil(context.Background(), f[0], f[1], epoch, target, testOptions()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "conn", Type: arrow.BinaryTypes.String},
	{Name: "n", Type: arrow.PrimitiveTypes.Int64},
}, nil)

func testOptions() Options {
	return Options{CheckpointInterval: 7, CompactMinFiles: 10}
}

// batch is rows (conn, n) repeated k times, weight +1, in the change schema.
func batch(conn string, n int64, k int) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, pipeline.WithWeight(testSchema))
	defer b.Release()
	for range k {
		b.Field(0).(*array.StringBuilder).Append(conn)
		b.Field(1).(*array.Int64Builder).Append(n)
		b.Field(2).(*array.Int64Builder).Append(1)
	}
	return b.NewRecordBatch()
}

// writeUntil commits (conn, n) x3 for n = next commit number until the
// connector's commit reaches target, competing with whoever else writes
// it: a lost race (fenced or superseded) re-reads the table and goes on.
func writeUntil(ctx context.Context, loc, conn string, epoch, target int64, o Options) error {
	t, err := Open(ctx, loc, o)
	if err != nil {
		return err
	}
	defer t.Close()
	for {
		st, err := t.Connector(ctx, "t", conn)
		if err != nil {
			return err
		}
		if st.Commit >= target {
			t.Flush()
			return nil
		}
		n := st.Commit + 1
		rec := batch(conn, n, 3)
		progress, _ := json.Marshal(map[string]int64{"n": n})
		_, err = t.Commit(ctx, Commit{Table: "t", Connector: conn, Number: n, Epoch: epoch, Progress: progress,
			Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(testSchema)})
		rec.Release()
		if errors.Is(err, ErrFenced) || errors.Is(err, ErrSuperseded) {
			continue
		}
		if err != nil {
			return err
		}
	}
}

func create(t *testing.T, o Options) (*Table, string) {
	loc := filepath.Join(t.TempDir(), "p", "t")
	tbl, err := Create(context.Background(), loc, "t", testSchema, o)
	require.NoError(t, err)
	return tbl, loc
}

// counts returns how often each (conn, n) appears, from the change stream
// (changes) or from the current snapshot.
func counts(t *testing.T, tbl *Table, changes bool) map[string]int {
	out := map[string]int{}
	add := func(rec arrow.RecordBatch) error {
		for i := range int(rec.NumRows()) {
			k := fmt.Sprintf("%s/%d", rec.Column(0).(*array.String).Value(i), rec.Column(1).(*array.Int64).Value(i))
			out[k] += int(rec.Column(2).(*array.Int64).Value(i))
		}
		return nil
	}
	if changes {
		require.NoError(t, tbl.Changes(context.Background(), 0, -1, func(_ Change, rec arrow.RecordBatch) error { return add(rec) }))
	} else {
		require.NoError(t, tbl.Scan(context.Background(), add))
	}
	return out
}

// TestConcurrentWriters: writers in goroutines and in separate processes
// commit at once for the same connectors and for others, with log
// checkpoints and compactions between them. Every commit number of
// every connector is in the table exactly once: never a duplicate,
// never a lost commit, in the change stream and in the compacted
// snapshot.
func TestConcurrentWriters(t *testing.T) {
	_, loc := create(t, testOptions())
	const target = 40
	conns := []string{"a", "b", "c"}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for _, conn := range conns {
		for w := range 3 { // three goroutines per connector, different epochs
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- writeUntil(ctx, loc, conn, int64(w), target, testOptions())
			}()
		}
	}
	var procs []*exec.Cmd
	for _, conn := range []string{"a", "b"} { // and a process each for two of them
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("SLUICE_STORE_WRITER=%s %s %d %d", loc, conn, 7, target))
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		procs = append(procs, cmd)
	}
	wg.Wait()
	for _, p := range procs {
		require.NoError(t, p.Wait(), "writer process")
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	tbl, err := Open(ctx, loc, testOptions())
	require.NoError(t, err)
	want := map[string]int{}
	for _, conn := range conns {
		st, err := tbl.Connector(ctx, "t", conn)
		require.NoError(t, err)
		require.Equal(t, int64(target), st.Commit, "connector %s's txn version", conn)
		for n := 1; n <= target; n++ {
			want[fmt.Sprintf("%s/%d", conn, n)] = 3
		}
	}
	require.Equal(t, want, counts(t, tbl, true), "change stream")
	require.Equal(t, want, counts(t, tbl, false), "snapshot")
	commits, err := tbl.Commits(ctx)
	require.NoError(t, err)
	require.Len(t, commits, len(conns)*target, "one version per connector commit")
	_, files, err := tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.Less(t, len(files), 10+len(conns)*2, "compaction keeps the active files few")
	cp, err := delta.LastCheckpointVersion(ctx, tbl.Storage())
	require.NoError(t, err)
	require.Greater(t, cp, int64(0), "log checkpoints were written")
}

// TestStaleAttemptFenced: an attempt slowed between preparing and
// committing wakes after a newer attempt of its connector committed its
// number: it is fenced and stores nothing. The newer attempt is not
// harmed. And the other way round: when the older attempt commits first,
// the newer one learns it must resume from the table (superseded).
func TestStaleAttemptFenced(t *testing.T) {
	ctx := context.Background()
	tbl, loc := create(t, Options{})
	stale, err := Open(ctx, loc, Options{})
	require.NoError(t, err)
	schema := pipeline.WithWeight(testSchema)

	prepared, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookPrepared = func(c Commit) {
		if c.Epoch == 1 {
			once.Do(func() {
				close(prepared)
				<-release
			})
		}
	}
	defer func() { testHookPrepared = nil }()
	staleErr := make(chan error, 1)
	go func() {
		rec := batch("c", 1, 3)
		defer rec.Release()
		_, err := stale.Commit(ctx, Commit{Table: "t", Connector: "c", Number: 1, Epoch: 1, Records: []arrow.RecordBatch{rec}, Schema: schema})
		staleErr <- err
	}()
	<-prepared
	for n := int64(1); n <= 2; n++ { // the retry (epoch 2) commits 1 and 2
		rec := batch("c", n, 3)
		_, err := tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: n, Epoch: 2, Records: []arrow.RecordBatch{rec}, Schema: schema})
		rec.Release()
		require.NoError(t, err)
	}
	close(release)
	require.ErrorIs(t, <-staleErr, ErrFenced)
	require.Equal(t, map[string]int{"c/1": 3, "c/2": 3}, counts(t, tbl, true))
	entries, err := os.ReadDir(loc)
	require.NoError(t, err)
	data := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".parquet") {
			data++
		}
	}
	require.Equal(t, 2, data, "the fenced attempt's data file was deleted")

	// The older attempt (epoch 1) commits 3 after the newer one (epoch 3)
	// resumed at 2: the newer one is superseded, not fenced.
	rec := batch("c", 3, 1)
	defer rec.Release()
	_, err = stale.Commit(ctx, Commit{Table: "t", Connector: "c", Number: 3, Epoch: 1, Records: []arrow.RecordBatch{rec}, Schema: schema})
	require.NoError(t, err)
	_, err = tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: 3, Epoch: 3, Records: []arrow.RecordBatch{rec}, Schema: schema})
	require.ErrorIs(t, err, ErrSuperseded)
}

// TestCheckpointBoundsResume: a resume reads the last log checkpoint and
// at most CheckpointInterval commits after it: with every commit before
// the checkpoint deleted, the table still opens with every connector's
// state and every active file.
func TestCheckpointBoundsResume(t *testing.T) {
	ctx := context.Background()
	o := Options{CheckpointInterval: 10, CompactMinFiles: -1}
	tbl, loc := create(t, o)
	schema := pipeline.WithWeight(testSchema)
	for n := int64(1); n <= 34; n++ {
		rec := batch("c", n, 1)
		p, _ := json.Marshal(map[string]int64{"n": n})
		_, err := tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: n, Epoch: 1, Progress: p, Records: []arrow.RecordBatch{rec}, Schema: schema})
		rec.Release()
		require.NoError(t, err)
	}
	tbl.Flush()
	hint, err := os.ReadFile(filepath.Join(loc, "_delta_log", "_last_checkpoint"))
	require.NoError(t, err)
	require.JSONEq(t, `{"version": 30, "size": 34}`, string(hint)) // protocol, metaData, txn, domain, 30 adds
	for v := range 30 {
		require.NoError(t, os.Remove(filepath.Join(loc, delta.CommitFile(int64(v)))))
	}
	again, err := Open(ctx, loc, o)
	require.NoError(t, err)
	require.Equal(t, tbl.ID(), again.ID())
	st, err := again.Connector(ctx, "t", "c")
	require.NoError(t, err)
	require.Equal(t, int64(34), st.Commit)
	require.JSONEq(t, `{"n": 34}`, string(st.Progress))
	require.Len(t, counts(t, again, false), 34)
}

// TestCompaction: small files are merged in dataChange: false versions;
// the snapshot keeps every row once, the change stream does not repeat
// the merged rows, and merged-away files are vacuumed once their
// retention has passed, leaving the snapshot whole.
func TestCompaction(t *testing.T) {
	ctx := context.Background()
	o := Options{CheckpointInterval: 5, CompactMinFiles: 4}
	tbl, loc := create(t, o)
	commit := func(n int64) { commitAndSettle(t, tbl, n) }
	for n := int64(1); n <= 30; n++ {
		commit(n)
	}
	compactions := 0
	for v := range tbl.Version() + 1 {
		actions, err := delta.ReadCommit(ctx, tbl.Storage(), v)
		require.NoError(t, err)
		for _, a := range actions {
			if a.CommitInfo != nil && a.CommitInfo.Operation == "OPTIMIZE" {
				compactions++
			}
		}
	}
	require.Greater(t, compactions, 3)
	_, files, err := tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.LessOrEqual(t, len(files), 4)
	snap, changes := counts(t, tbl, false), counts(t, tbl, true)
	require.Len(t, snap, 30)
	require.Equal(t, snap, changes)
	for _, c := range snap {
		require.Equal(t, 2, c)
	}
	dataFiles := func() int { return countDataFiles(t, loc) }
	require.Equal(t, 30+compactions, dataFiles(), "within retention, merged-away files stay for readers of older versions")

	tbl.opts.Retention = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	for n := int64(31); n <= 35; n++ { // reaches a checkpoint, which vacuums
		commit(n)
	}
	_, files, err = tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, len(files)+len(tbl.snap.Tombstones), dataFiles(), "past retention, only the active files and the newest tombstones remain")
	require.Less(t, dataFiles(), 15)
	require.Len(t, counts(t, tbl, false), 35)
}

// commitAndSettle commits connector c's commit n (two rows) and waits for
// the background checkpoint and compaction it starts.
func commitAndSettle(t *testing.T, tbl *Table, n int64) {
	rec := batch("c", n, 2)
	_, err := tbl.Commit(context.Background(), Commit{Table: "t", Connector: "c", Number: n, Epoch: 1,
		Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(testSchema)})
	rec.Release()
	require.NoError(t, err)
	tbl.Flush()
}

// countDataFiles counts the Parquet files in a local table's root.
func countDataFiles(t *testing.T, loc string) int {
	entries, err := os.ReadDir(loc)
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".parquet") {
			n++
		}
	}
	return n
}

// TestHoldKeepsFiles: a reader's hold (an output's position) keeps the
// files it has still to read past the retention; an expired hold does
// not.
func TestHoldKeepsFiles(t *testing.T) {
	ctx := context.Background()
	tbl, loc := create(t, Options{CheckpointInterval: 5, CompactMinFiles: 4})
	commit := func(n int64) { commitAndSettle(t, tbl, n) }
	dataFiles := func() int { return countDataFiles(t, loc) }
	for n := int64(1); n <= 20; n++ {
		commit(n)
	}
	require.NoError(t, tbl.Hold(ctx, "out", 0)) // an output that has read nothing yet
	tbl.opts.Retention = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	for n := int64(21); n <= 30; n++ { // two checkpoints, which vacuum
		commit(n)
	}
	_, files, err := tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.Greater(t, len(tbl.snap.Tombstones), 10, "compactions removed files")
	require.Equal(t, len(files)+len(tbl.snap.Tombstones), dataFiles(), "the hold keeps every removed file")
	changes := counts(t, tbl, true)
	require.Len(t, changes, 30, "the change stream from version 1 is readable")

	// A hold not renewed for HoldExpiry no longer counts.
	b, err := json.Marshal(hold{Version: 0, Updated: time.Now().Add(-HoldExpiry - time.Minute).UnixMilli()})
	require.NoError(t, err)
	require.NoError(t, tbl.Storage().Put(ctx, HoldsDir+"/out.json", b))
	for n := int64(31); n <= 35; n++ {
		commit(n)
	}
	require.Less(t, dataFiles(), 15, "vacuumed once the hold expired")
	require.Len(t, counts(t, tbl, false), 35)
	require.Error(t, tbl.Hold(ctx, "../x", 0), "a hold's name is checked")
}

// TestTypesAndStats: every column type Sluice has is written with the
// Delta type and stats readers expect, and read back unchanged (TIME as
// microseconds since midnight).
func TestTypesAndStats(t *testing.T) {
	ctx := context.Background()
	cols := []pipeline.Column{{Name: "b", Type: "BOOLEAN"}, {Name: "i8", Type: "TINYINT"}, {Name: "i16", Type: "SMALLINT"},
		{Name: "i32", Type: "INT"}, {Name: "i64", Type: "BIGINT"}, {Name: "f32", Type: "REAL"}, {Name: "f64", Type: "DOUBLE"},
		{Name: "dec", Type: "DECIMAL(10,2)"}, {Name: "s", Type: "VARCHAR"}, {Name: "d", Type: "DATE"}, {Name: "tm", Type: "TIME"},
		{Name: "ts", Type: "TIMESTAMP"}, {Name: "bin", Type: "BYTEA"}}
	tab := pipeline.Table{Name: "t", Columns: cols}
	schema, err := tab.Schema()
	require.NoError(t, err)
	loc := filepath.Join(t.TempDir(), "t")
	tbl, err := Create(ctx, loc, "t", schema, Options{})
	require.NoError(t, err)
	row := `{"b": true, "i8": 1, "i16": 2, "i32": 3, "i64": 4, "f32": 1.5, "f64": 2.5, "dec": "12.34", "s": "x", "d": "2024-02-29",
		"tm": "12:30:00.000001", "ts": "2024-02-29 12:30:00.001500", "bin": "AQI=", "_weight": 1}`
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, pipeline.WithWeight(schema), strings.NewReader("["+row+`,{"_weight": -1}]`))
	require.NoError(t, err)
	defer rec.Release()
	_, err = tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: 1, Epoch: 1, Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(schema)})
	require.NoError(t, err)

	commit, err := os.ReadFile(filepath.Join(loc, delta.CommitFile(0)))
	require.NoError(t, err)
	require.Contains(t, string(commit), `"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["timestampNtz"],"writerFeatures":["domainMetadata","timestampNtz"]}`)
	for _, typ := range []string{`"boolean"`, `"byte"`, `"short"`, `"integer"`, `"long"`, `"float"`, `"double"`, `"decimal(10,2)"`, `"string"`, `"date"`, `"timestamp_ntz"`, `"binary"`} {
		require.Contains(t, tbl.snap.Metadata.SchemaString, typ)
	}
	actions, err := delta.ReadCommit(ctx, tbl.Storage(), 1)
	require.NoError(t, err)
	var stats map[string]any
	for _, a := range actions {
		if a.Add != nil {
			require.NoError(t, json.Unmarshal([]byte(a.Add.Stats), &stats))
		}
	}
	require.Equal(t, float64(2), stats["numRecords"])
	require.Equal(t, map[string]any{"b": 1.0, "i8": 1.0, "i16": 1.0, "i32": 1.0, "i64": 1.0, "f32": 1.0, "f64": 1.0, "dec": 1.0, "s": 1.0,
		"d": 1.0, "tm": 1.0, "ts": 1.0, "bin": 1.0, "_weight": 0.0}, stats["nullCount"])
	mins, maxs := stats["minValues"].(map[string]any), stats["maxValues"].(map[string]any)
	require.Equal(t, "2024-02-29", mins["d"])
	require.Equal(t, "2024-02-29T12:30:00.001", mins["ts"], "a timestamp's min rounds down to ms")
	require.Equal(t, "2024-02-29T12:30:00.002", maxs["ts"], "and its max up")
	require.Equal(t, -1.0, mins["_weight"])
	require.Equal(t, "x", maxs["s"])

	var got []string
	require.NoError(t, tbl.Scan(ctx, func(rec arrow.RecordBatch) error {
		b, err := rec.MarshalJSON()
		got = append(got, string(b))
		return err
	}))
	sort.Strings(got)
	require.Len(t, got, 1)
	require.Contains(t, got[0], `"tm":45000000001`)
	require.Contains(t, got[0], `"ts":"2024-02-29T12:30:00.0015"`)
	require.Contains(t, got[0], `"dec":"12.34"`)
}

// TestCheckSchema: a table created with other columns is refused with
// both column lists.
func TestCheckSchema(t *testing.T) {
	tbl, loc := create(t, Options{})
	require.NoError(t, tbl.CheckSchema(testSchema))
	other := arrow.NewSchema([]arrow.Field{{Name: "conn", Type: arrow.BinaryTypes.String}, {Name: "n", Type: arrow.PrimitiveTypes.Int32}}, nil)
	err := tbl.CheckSchema(other)
	require.EqualError(t, err, "the Delta table "+loc+" has the columns (conn string not null, n long not null, _weight long not null), but the pipeline declares (conn string not null, n integer not null, _weight long not null)")
}

// TestRefusesDeletionVectors: the store reads data files whole, so a
// table with a deletion vector, or whose protocol has the
// deletionVectors feature, is refused with an error naming the file or
// the feature: when opened, when an open Table reads the version, and
// in the change stream.
func TestRefusesDeletionVectors(t *testing.T) {
	ctx := context.Background()
	inline := &delta.DeletionVector{StorageType: delta.DVInline, PathOrInlineDv: "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", SizeInBytes: 40, Cardinality: 6}
	for _, tc := range []struct {
		name    string
		actions []delta.Action
		want    string
	}{
		{"file", []delta.Action{{Add: &delta.File{Path: "part-dv.parquet", Size: 1, DeletionVector: inline}}}, "data file part-dv.parquet has a deletion vector"},
		{"protocol", []delta.Action{{Protocol: &delta.Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
			ReaderFeatures: []string{"deletionVectors"}, WriterFeatures: []string{"deletionVectors", "domainMetadata"}}}}, "table feature deletionVectors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, loc := create(t, Options{CheckpointInterval: 100, CompactMinFiles: 100})
			defer tbl.Close()
			commitAndSettle(t, tbl, 1)
			v := tbl.Version()
			require.NoError(t, delta.WriteCommit(ctx, tbl.Storage(), v+1, tc.actions))

			_, err := Open(ctx, loc, Options{})
			require.ErrorContains(t, err, tc.want)
			_, err = tbl.Connector(ctx, "t", "c")
			require.ErrorContains(t, err, tc.want)
			_, err = tbl.Connector(ctx, "t", "c")
			require.ErrorContains(t, err, tc.want, "still refused")
			require.Equal(t, v, tbl.Version(), "the refused version is not the Table's state")
			rec := batch("c", 2, 1)
			defer rec.Release()
			_, err = tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: 2, Epoch: 1,
				Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(testSchema)})
			require.ErrorContains(t, err, tc.want)
			err = tbl.Changes(ctx, 0, -1, func(Change, arrow.RecordBatch) error { return nil })
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestVacuumSkipsActiveFiles: a tombstone whose path is active again
// (the remove of a file's replaced logical version) is never vacuumed,
// however old: the data file is live.
func TestVacuumSkipsActiveFiles(t *testing.T) {
	ctx := context.Background()
	tbl, loc := create(t, Options{CheckpointInterval: 100, CompactMinFiles: 100})
	defer tbl.Close()
	commitAndSettle(t, tbl, 1)
	commitAndSettle(t, tbl, 2)
	tbl.mu.Lock()
	var live string
	for p := range tbl.snap.Files {
		live = p
	}
	tbl.snap.Tombstones[live] = &delta.File{Path: live, DeletionTimestamp: 1} // removed long ago
	snap := tbl.snap.Clone()
	tbl.opts.Retention = time.Millisecond
	tbl.mu.Unlock()
	require.NoError(t, tbl.checkpoint(ctx, snap))
	_, err := os.Stat(filepath.Join(loc, live))
	require.NoError(t, err, "the active file %s is not vacuumed", live)
	require.Equal(t, map[string]int{"c/1": 2, "c/2": 2}, counts(t, tbl, false))
}

// TestInsertsOnly: a snapshot's files say from their stats whether the
// table has deletes, and ScanFiles stops reading at the callback's error.
func TestInsertsOnly(t *testing.T) {
	ctx := context.Background()
	tbl, _ := create(t, Options{CompactMinFiles: -1})
	defer tbl.Close()
	commit := func(n int64, weight int64) {
		b := array.NewRecordBuilder(memory.DefaultAllocator, pipeline.WithWeight(testSchema))
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append("c")
		b.Field(1).(*array.Int64Builder).Append(n)
		b.Field(2).(*array.Int64Builder).Append(weight)
		rec := b.NewRecordBatch()
		defer rec.Release()
		_, err := tbl.Commit(ctx, Commit{Table: "t", Connector: "c", Number: n, Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(testSchema)})
		require.NoError(t, err)
	}
	_, files, err := tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.True(t, InsertsOnly(files), "an empty table")
	commit(1, 1)
	commit(2, 2)
	_, files, err = tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.True(t, InsertsOnly(files))
	stop := errors.New("stop")
	batches := 0
	err = tbl.ScanFiles(ctx, files, func(arrow.RecordBatch) error { batches++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, batches, "ScanFiles goes on after its callback failed")

	commit(3, -1)
	_, files, err = tbl.Snapshot(ctx)
	require.NoError(t, err)
	require.False(t, InsertsOnly(files))

	noStats := *files[0]
	noStats.Stats = ""
	require.False(t, InsertsOnly([]*delta.File{&noStats}), "a file without stats may hold deletes")
}
