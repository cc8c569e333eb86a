package delta_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/delta"
)

// fuzzCheckpoint is a real single-part checkpoint, of version 10 (see
// testdata/README.md).
var fuzzCheckpoint = filepath.Join("testdata", "simple_table_with_checkpoint", "00000000000000000010.checkpoint.parquet")

// fuzzMaxAlloc bounds what reading one fuzzed log may allocate.
const fuzzMaxAlloc = 256 << 20

// FuzzLog reads a local table whose _delta_log holds fuzzed commits
// (versions base, base+1 and base+2; an empty one is left out) and a
// fuzzed _last_checkpoint (left out when empty), with base 10 and the
// real checkpoint of version 10 beside them when withCheckpoint is set.
// Errors are fine; panics are not, and neither is an unbounded
// allocation. What loads must make sense: LoadSnapshot at a version
// returns that version; LoadSnapshot(-1), LoadLatest (with its
// tombstones loaded) and Latest agree; a snapshot's schema, read with
// ArrowSchema, holds only types Arrow accepts and survives SchemaString.
func FuzzLog(f *testing.F) {
	f.Add([]byte(`{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":[],"configuration":{},"createdTime":1}}
{"add":{"path":"a.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":1}"}}
`), []byte(`{"txn":{"appId":"t.c","version":1}}
{"remove":{"path":"a.parquet","deletionTimestamp":2,"dataChange":true}}
`), []byte{}, []byte{}, false, int8(-1))
	checkpoint, err := os.ReadFile(fuzzCheckpoint)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, c0, c1, c2, last []byte, withCheckpoint bool, version int8) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > fuzzMaxAlloc {
				t.Fatalf("reading the log allocated %d MB", n>>20)
			}
		}()
		ctx := context.Background()
		dir := t.TempDir()
		logDir := filepath.Join(dir, delta.LogDir)
		if err := os.Mkdir(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		base := int64(0)
		if withCheckpoint {
			base = 10
			if err := os.WriteFile(filepath.Join(logDir, filepath.Base(fuzzCheckpoint)), checkpoint, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range [][]byte{c0, c1, c2} {
			if len(c) > 0 {
				if err := os.WriteFile(filepath.Join(dir, delta.CommitFile(base+int64(i))), c, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(last) > 0 {
			if err := os.WriteFile(filepath.Join(logDir, "_last_checkpoint"), last, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		st, err := delta.NewStorage(ctx, dir, s3.Settings{})
		if err != nil {
			t.Fatal(err)
		}

		_, _ = delta.LastCheckpointVersion(ctx, st)
		_, _ = delta.VersionAt(ctx, st, time.Now())
		latest, latestErr := delta.Latest(ctx, st)
		if latestErr == nil && (latest < 0 || latest > base+2) {
			t.Fatalf("Latest is %d; the log holds versions %d to %d", latest, base, base+2)
		}
		full, fullErr := delta.LoadSnapshot(ctx, st, -1)
		if fullErr == nil {
			fuzzSnapshot(t, full)
			if latestErr == nil && full.Version != latest {
				t.Fatalf("LoadSnapshot(-1) is version %d, Latest %d", full.Version, latest)
			}
		}
		if s, err := delta.LoadSnapshot(ctx, st, int64(version)); err == nil {
			fuzzSnapshot(t, s)
			if version >= 0 && s.Version != int64(version) {
				t.Fatalf("LoadSnapshot(%d) is version %d", version, s.Version)
			}
		}
		s, err := delta.LoadLatest(ctx, st)
		if err != nil || s == nil {
			return
		}
		fuzzSnapshot(t, s)
		if err := s.LoadTombstones(ctx, st); err != nil {
			return
		}
		if _, err := s.CatchUp(ctx, st); err != nil {
			t.Fatalf("CatchUp after LoadLatest: %v", err)
		}
		if fullErr != nil {
			return
		}
		if s.Version != full.Version {
			t.Fatalf("LoadLatest is version %d, LoadSnapshot(-1) %d", s.Version, full.Version)
		}
		for what, keys := range map[string][2][]string{
			"files":      {slices.Sorted(maps.Keys(full.Files)), slices.Sorted(maps.Keys(s.Files))},
			"tombstones": {slices.Sorted(maps.Keys(full.Tombstones)), slices.Sorted(maps.Keys(s.Tombstones))},
			"txns":       {slices.Sorted(maps.Keys(full.Txns)), slices.Sorted(maps.Keys(s.Txns))},
			"domains":    {slices.Sorted(maps.Keys(full.Domains)), slices.Sorted(maps.Keys(s.Domains))},
		} {
			if !slices.Equal(keys[0], keys[1]) {
				t.Fatalf("%s: LoadSnapshot(-1) has %q, LoadLatest %q", what, keys[0], keys[1])
			}
		}
		if !maps.Equal(full.Txns, s.Txns) || !maps.Equal(full.Domains, s.Domains) {
			t.Fatalf("LoadSnapshot(-1) has txns %v and domains %v, LoadLatest %v and %v", full.Txns, full.Domains, s.Txns, s.Domains)
		}
	})
}

// fuzzSnapshot checks what a loaded snapshot offers its readers.
func fuzzSnapshot(t *testing.T, s *delta.Snapshot) {
	if s.Protocol == nil || s.Metadata == nil {
		t.Fatalf("snapshot %d without protocol or metadata", s.Version)
	}
	for p, f := range s.Files {
		if got, err := f.FilePath(); err != nil || got != p {
			t.Fatalf("file %q has path %q (%v)", p, got, err)
		}
		_ = f.NumRecords()
		_ = f.DataChanged()
	}
	_, _ = delta.ParseColumns(s.Metadata)
	schema, err := delta.ArrowSchema(s.Metadata)
	if err != nil {
		return
	}
	for _, f := range schema.Fields() {
		if d, ok := f.Type.(*arrow.Decimal128Type); ok && (d.Precision < 1 || d.Precision > 38 || d.Scale < 0 || d.Scale > d.Precision) {
			t.Fatalf("column %s: ArrowSchema returned %s, which Arrow and Delta refuse", f.Name, d)
		}
	}
	ss, err := delta.SchemaString(schema)
	if err != nil {
		t.Fatalf("SchemaString of ArrowSchema's %s: %v", schema, err)
	}
	again, err := delta.ArrowSchema(&delta.Metadata{SchemaString: ss})
	if err != nil || !again.Equal(schema) {
		t.Fatalf("schema %s became %s through SchemaString (%v)", schema, again, err)
	}
}
