package delta_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/internal/fixture"
)

func newSource(t *testing.T, cfg string, sc *arrow.Schema) (connectors.Source, error) {
	return delta.New(connectors.Params{Endpoint: "t.delta", Config: json.RawMessage(cfg), Schema: sc, BatchSize: 1000,
		Allocator: memory.NewCheckedAllocator(memory.NewGoAllocator())})
}

// read opens a source at cp (nil: resolved as the workflow would) and
// reads up to max records (0: all), in batches of 2 rows.
func read(t *testing.T, cfg string, sc *arrow.Schema, cp connectors.Checkpoint, max int64) fixture.Drained {
	t.Helper()
	p := connectors.Params{Endpoint: "t.delta", Config: json.RawMessage(cfg), Schema: sc, BatchSize: 2}
	return fixture.ReadSource(t, delta.New, p, cp, max, true)
}

// table returns the net rows of a change stream, sorted: inserts minus
// deletes, as "value|value" strings.
func table(t *testing.T, rows []string) []string {
	net := map[string]int{}
	for _, r := range rows {
		i := strings.LastIndex(r, "|")
		w := 1
		if r[i+1] == '-' {
			w = -1
		}
		var n int
		fmt.Sscan(r[i+2:], &n)
		net[r[:i]] += w * n
	}
	var out []string
	for k, n := range net {
		require.GreaterOrEqual(t, n, 0, "row %s deleted more often than inserted", k)
		for range n {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func sum(t *testing.T, rows []string) int64 {
	var s int64
	for _, r := range rows {
		var n int64
		_, err := fmt.Sscan(r, &n)
		require.NoError(t, err, r)
		s += n
	}
	return s
}

func cfg(uri string, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`{"uri": %q%s}`, uri, extra)
}

// TestSnapshotVersions reads every version of the reference tables that
// LAKEHOUSE.md records and compares row counts and values.
func TestSnapshotVersions(t *testing.T) {
	simple := fixture.Shared(t, "delta/simple_table")
	v080 := fixture.Shared(t, "delta/delta-0.8.0")
	ckpt := fixture.Shared(t, "delta/simple_table_with_checkpoint")
	for _, tc := range []struct {
		name    string
		uri     string
		sc      *arrow.Schema
		version int64
		rows    int
		sum     int64
		values  []string // sorted, when checked one by one
	}{
		{"simple_table v0 write", simple, fixture.Schema("id BIGINT"), 0, 5, 10, []string{"0", "1", "2", "3", "4"}},
		{"simple_table v1 merge", simple, fixture.Schema("id BIGINT"), 1, 20, 190, nil},
		{"simple_table v2 overwrite", simple, fixture.Schema("id BIGINT"), 2, 5, 35, []string{"5", "6", "7", "8", "9"}},
		{"simple_table v3 update", simple, fixture.Schema("id BIGINT"), 3, 5, 235, []string{"106", "108", "5", "7", "9"}},
		{"simple_table v4 delete", simple, fixture.Schema("id BIGINT"), 4, 3, 21, []string{"5", "7", "9"}},
		{"delta-0.8.0 v0", v080, fixture.Schema("value INT"), 0, 5, 10, []string{"0", "1", "2", "3", "4"}},
		{"delta-0.8.0 v1 delete rewrites a file", v080, fixture.Schema("value INT"), 1, 4, 7, []string{"0", "1", "2", "4"}},
		{"checkpoint table v5 from JSON", ckpt, fixture.Schema("version INT"), 5, 6, 15, nil},
		{"checkpoint table v10 from the checkpoint", ckpt, fixture.Schema("version INT"), 10, 11, 45, []string{"0", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := read(t, cfg(tc.uri, fmt.Sprintf(`"mode": "snapshot", "version": %d`, tc.version)), tc.sc, nil, 0)
			require.True(t, d.EndOfInput)
			rows := table(t, d.Rows)
			require.Len(t, rows, tc.rows)
			require.Equal(t, tc.sum, sum(t, rows))
			if tc.values != nil {
				require.Equal(t, tc.values, rows)
			}
		})
	}
}

// TestPartitionValues reads c1 (INT) and c2 (VARCHAR) from partitionValues
// strings; the data files hold only c3. A filter mixes both kinds.
func TestPartitionValues(t *testing.T) {
	uri := fixture.Shared(t, "delta/delta-2.2.0-partitioned-types")
	sc := fixture.Schema("c1 INT", "c2 VARCHAR", "c3 INT")
	d := read(t, cfg(uri, `"mode": "snapshot"`), sc, nil, 0)
	require.Equal(t, []string{"4|c|5", "5|b|6", "6|a|4"}, table(t, d.Rows))

	d = read(t, cfg(uri, `"mode": "snapshot", "filter": "c2 = 'b' OR (c3 < 5 AND c1 BETWEEN 6 AND 7)"`), sc, nil, 0)
	require.Equal(t, []string{"5|b|6", "6|a|4"}, table(t, d.Rows))

	// timestamp_column orders files by the stats' minValues of c3: 4, 5, 6.
	d = read(t, cfg(uri, `"mode": "snapshot", "timestamp_column": "c3"`), sc, nil, 0)
	require.Equal(t, []string{"6|a|4|+1", "4|c|5|+1", "5|b|6|+1"}, d.Rows)
}

// TestFollowEqualsSnapshot follows every commit of the reference tables
// from version 0: for each version, inserts minus deletes must equal the
// snapshot at that version. delta-0.8.0's DELETE rewrites a file, so its
// three old rows come back as deletes and two as inserts.
func TestFollowEqualsSnapshot(t *testing.T) {
	for _, tc := range []struct {
		table string
		sc    *arrow.Schema
		last  int64
	}{
		{"delta/simple_table", fixture.Schema("id BIGINT"), 4},
		{"delta/delta-0.8.0", fixture.Schema("value INT"), 1},
		{"delta/simple_table_with_checkpoint", fixture.Schema("version INT"), 10},
	} {
		uri := fixture.Shared(t, tc.table)
		for v := int64(0); v <= tc.last; v++ {
			t.Run(fmt.Sprintf("%s v%d", tc.table, v), func(t *testing.T) {
				follow := read(t, cfg(uri, fmt.Sprintf(`"mode": "follow", "start_version": 0, "end_version": %d`, v)), tc.sc, nil, 0)
				require.True(t, follow.EndOfInput)
				snap := read(t, cfg(uri, fmt.Sprintf(`"mode": "snapshot", "version": %d`, v)), tc.sc, nil, 0)
				require.Equal(t, table(t, snap.Rows), table(t, follow.Rows))
			})
		}
	}
	d := read(t, cfg(fixture.Shared(t, "delta/delta-0.8.0"), `"mode": "follow", "version": 0, "end_version": 1`), fixture.Schema("value INT"), nil, 0)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"2|+1", "2|-1", "3|-1", "4|+1", "4|-1"}, d.Rows)
}

// TestResumeEverywhere stops snapshot_and_follow of simple_table after
// every record and resumes from the checkpoint: the concatenated change
// stream is the same as one uninterrupted read.
func TestResumeEverywhere(t *testing.T) {
	uri := fixture.Shared(t, "delta/simple_table")
	c := cfg(uri, `"mode": "snapshot_and_follow", "version": 1, "end_version": 4`)
	sc := fixture.Schema("id BIGINT")
	whole := read(t, c, sc, nil, 0)
	got := fixture.ReadInSteps(t, delta.New, connectors.Params{Config: json.RawMessage(c), Schema: sc, BatchSize: 2}, 1, true)
	require.Equal(t, whole.Rows, got.Rows)
	require.Equal(t, []string{"5", "7", "9"}, table(t, got.Rows))
}

func TestDatetime(t *testing.T) {
	uri := fixture.Shared(t, "delta/simple_table")
	at := time.UnixMilli(1587968604143 + 1000).UTC().Format(time.RFC3339) // a second after version 2's commit
	d := read(t, cfg(uri, fmt.Sprintf(`"mode": "snapshot", "datetime": %q`, at)), fixture.Schema("id BIGINT"), nil, 0)
	require.Equal(t, []string{"5", "6", "7", "8", "9"}, table(t, d.Rows))

	src, err := newSource(t, cfg(uri, `"mode": "snapshot", "datetime": "2019-01-01 00:00:00"`), fixture.Schema("id BIGINT"))
	require.NoError(t, err)
	_, err = src.(connectors.Resolver).Resolve(context.Background())
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "has no version committed at or before 2019-01-01T00:00:00Z")
}

// copyTable copies a shared table into a temporary directory.
func copyTable(t *testing.T, name string) string {
	dst := filepath.Join(t.TempDir(), filepath.Base(name))
	require.NoError(t, os.CopyFS(dst, os.DirFS(fixture.Shared(t, name))))
	require.NoError(t, filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			err = os.Chmod(p, 0o755)
		}
		return err
	}))
	return dst
}

// TestCheckpointOnly removes the JSON commits the checkpoint covers: the
// table still reads at version 10 (from _last_checkpoint and the Parquet
// checkpoint alone); an older version is a clear error.
func TestCheckpointOnly(t *testing.T) {
	dir := copyTable(t, "delta/simple_table_with_checkpoint")
	for v := 0; v <= 10; v++ {
		require.NoError(t, os.Remove(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", v))))
	}
	d := read(t, cfg(dir, `"mode": "snapshot"`), fixture.Schema("version INT"), nil, 0)
	require.Len(t, table(t, d.Rows), 11)
	require.Equal(t, int64(45), sum(t, table(t, d.Rows)))

	src, err := newSource(t, cfg(dir, `"mode": "snapshot", "version": 5`), fixture.Schema("version INT"))
	require.NoError(t, err)
	err = src.Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "version 5 cannot be read: commit 0 is missing and no checkpoint covers it")
}

// writeTable writes a one-commit Delta table with the given protocol and
// metaData configuration and schema fields, and one data file.
func writeTable(t *testing.T, protocol, configuration, fields string, data arrow.RecordBatch) string {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "_delta_log"), 0o755))
	require.NoError(t, fixture.WriteParquet(filepath.Join(dir, "part-0.parquet"), data))
	schemaString, _ := json.Marshal(`{"type":"struct","fields":[` + fields + `]}`)
	log := fmt.Sprintf(`{"protocol":%s}
{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":%s,"partitionColumns":[],"configuration":%s,"createdTime":1}}
{"add":{"path":"part-0.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
`, protocol, schemaString, configuration)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", 0)), []byte(log), 0o644))
	return dir
}

// TestColumnMapping reads a table whose files name the column by its
// physical name (delta.columnMapping.mode = name).
func TestColumnMapping(t *testing.T) {
	rec := fixture.Int64s("col-5f422f40-de70-45b2-88ab-1d5c90e94db1", 7, 8, 9)
	defer rec.Release()
	dir := writeTable(t, `{"minReaderVersion":2,"minWriterVersion":5}`, `{"delta.columnMapping.mode":"name","delta.columnMapping.maxColumnId":"1"}`,
		`{"name":"id","type":"long","nullable":true,"metadata":{"delta.columnMapping.id":1,"delta.columnMapping.physicalName":"col-5f422f40-de70-45b2-88ab-1d5c90e94db1"}}`, rec)
	d := read(t, cfg(dir, `"mode": "snapshot", "filter": "id >= 8"`), fixture.Schema("id BIGINT"), nil, 0)
	require.Equal(t, []string{"8", "9"}, table(t, d.Rows))
}

// TestUnsupportedReaderFeatures: a table that needs a reader feature
// Sluice does not implement (v2 checkpoints) is refused with the
// feature's name, not read with wrong rows; deletionVectors and
// columnMapping are supported.
func TestUnsupportedReaderFeatures(t *testing.T) {
	rec := fixture.Int64s("id", 1)
	defer rec.Release()
	dir := writeTable(t, `{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors","columnMapping","v2Checkpoint"],"writerFeatures":["deletionVectors"]}`,
		`{}`, `{"name":"id","type":"long","nullable":true,"metadata":{}}`, rec)
	src, err := newSource(t, cfg(dir, `"mode": "snapshot"`), fixture.Schema("id BIGINT"))
	require.NoError(t, err)
	err = src.Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.EqualError(t, err, dir+": the table requires reader features that Sluice does not support: v2Checkpoint")
}

func TestConfigErrors(t *testing.T) {
	sc := fixture.Schema("id BIGINT", "ts TIMESTAMP", "name VARCHAR")
	for _, tc := range []struct{ name, cfg, want string }{
		{"nothing", `{}`, "transport.config.uri: required\ntransport.config.mode: required: snapshot, follow or snapshot_and_follow"},
		{"bad mode", `{"uri": "/t", "mode": "cdc"}`, `transport.config.mode: want snapshot, follow or snapshot_and_follow, got "cdc"`},
		{"version and datetime", `{"uri": "/t", "mode": "snapshot", "version": 1, "datetime": "2024-01-01"}`, "transport.config.datetime: set version or datetime, not both"},
		{"bad datetime", `{"uri": "/t", "mode": "snapshot", "datetime": "yesterday"}`, `transport.config.datetime: want RFC 3339 (2024-01-02T15:04:05Z) or 2024-01-02 15:04:05, got "yesterday"`},
		{"start_version in snapshot", `{"uri": "/t", "mode": "snapshot_and_follow", "start_version": 3}`, "transport.config.start_version: only for mode follow (snapshot_and_follow follows from the snapshot's version)"},
		{"end before start", `{"uri": "/t", "mode": "follow", "start_version": 3, "end_version": 2}`, "transport.config.end_version: 2 is before start_version 3"},
		{"end_version in snapshot", `{"uri": "/t", "mode": "snapshot", "end_version": 2}`, "transport.config.end_version: only for modes that follow (snapshot mode ends after the snapshot)"},
		{"filter column", `{"uri": "/t", "mode": "snapshot", "filter": "idd > 3"}`, `transport.config.filter: unknown column "idd" at character 1`},
		{"filter syntax", `{"uri": "/t", "mode": "snapshot", "filter": "id > 3 AND"}`, "transport.config.filter: expected a column or a value at the end"},
		{"filter literal", `{"uri": "/t", "mode": "snapshot", "filter": "id = 'x'"}`, `transport.config.filter: cannot compare column id (int64) with x: strconv.ParseInt: parsing "x": invalid syntax`},
		{"timestamp_column", `{"uri": "/t", "mode": "snapshot", "timestamp_column": "name"}`, "transport.config.timestamp_column: column name is utf8; want a TIMESTAMP, DATE or number"},
		{"uri scheme", `{"uri": "gs://b/t", "mode": "snapshot"}`, `transport.config.uri: want a local path, file:// or s3://, got "gs://b/t"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, fixture.ConfigError("delta_table_input", delta.New, tc.cfg, sc))
		})
	}
	require.Empty(t, fixture.ConfigError("delta_table_input", delta.New,
		`{"uri": "/t", "mode": "snapshot", "filter": "ts >= TIMESTAMP '2024-01-01 00:00:00' and (name in ('a', 'b') or not id between -5 and 5) and name is not null"}`, sc))
}

// TestS3 reads the checkpointed table from an S3 bucket (gofakes3 over
// HTTP): at version 10 from _last_checkpoint and the checkpoint, listing
// _delta_log from there; at version 5 by listing the whole log.
func TestS3(t *testing.T) {
	srv := fixture.NewS3(t)
	srv.PutDir(t, "lake", "tables/ckpt", fixture.Shared(t, "delta/simple_table_with_checkpoint"))
	for _, tc := range []struct {
		version int64
		rows    int
		sum     int64
	}{{10, 11, 45}, {5, 6, 15}} {
		c := fmt.Sprintf(`{"uri": "s3://lake/tables/ckpt", "mode": "snapshot", "version": %d, %s}`, tc.version, srv.Config())
		d := read(t, c, fixture.Schema("version INT"), nil, 0)
		rows := table(t, d.Rows)
		require.Len(t, rows, tc.rows)
		require.Equal(t, tc.sum, sum(t, rows))
	}
	follow := read(t, fmt.Sprintf(`{"uri": "s3://lake/tables/ckpt", "mode": "follow", "start_version": 3, "end_version": 10, %s}`, srv.Config()), fixture.Schema("version INT"), nil, 0)
	require.Equal(t, []string{"0", "3", "4", "5", "6", "7", "8", "9"}, table(t, follow.Rows))

	src, err := newSource(t, `{"uri": "s3://nowhere/t", "mode": "snapshot", `+srv.Config()+`}`, fixture.Schema("version INT"))
	require.NoError(t, err)
	err = src.Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "NoSuchBucket")
}
