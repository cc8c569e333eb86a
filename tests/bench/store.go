package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

// duckdbCopy times DuckDB's own COPY of the flights file to Parquet with
// the weight column (the same output the table store writes), with the
// npm package the tests use (tests/duckdb/time.mjs: the best of three
// runs, timed inside node). It returns 0 when the package is missing.
func duckdbCopy(data, dst string) (time.Duration, error) {
	if _, err := os.Stat(filepath.Join("tests", "duckdb", "node_modules", "@duckdb", "node-api")); err != nil {
		return 0, nil
	}
	q := fmt.Sprintf(`copy (select *, 1::bigint as _weight from read_parquet('%s')) to '%s' (format parquet, compression snappy)`, data, dst)
	out, err := exec.Command("node", filepath.Join("tests", "duckdb", "time.mjs"), "3", q).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("duckdb: %v: %s", err, out)
	}
	ms, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0, fmt.Errorf("duckdb: %q: %w", out, err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// ageResult is the commit and resume cost at one table age.
type ageResult struct {
	commits                int64
	p50, p95, max          time.Duration
	resume                 time.Duration
	active, onDisk, tombst int
	version, checkpoint    int64
}

// benchAge commits like a live connector at 1,000 records/s with the
// default commit_interval_ms (one commit of 1,000 rows a second) into a
// table with the default options, up to the largest of ages, and at each
// age measures the latency of 200 more commits and the time a resuming
// connector needs (store.Open and its state: what Ingest does). The
// history is written as fast as the disk allows; every 100 commits the
// background checkpoints and compactions are let catch up, as they do
// in the 100 s those commits take at one a second.
func benchAge(dir string, ages []int64) ([]ageResult, error) {
	ctx := context.Background()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "delay", Type: arrow.PrimitiveTypes.Float64},
		{Name: "origin", Type: arrow.BinaryTypes.String},
	}, nil)
	change := pipeline.WithWeight(schema)
	loc := filepath.Join(dir, "age", "events")
	tbl, err := store.Create(ctx, loc, "events", schema, store.Options{})
	if err != nil {
		return nil, err
	}
	defer tbl.Close()
	airports := []string{"ATL", "ORD", "DFW", "LAX", "DEN", "SFO", "SEA", "JFK"}
	batch := func(n int64) arrow.RecordBatch {
		b := array.NewRecordBuilder(memory.DefaultAllocator, change)
		defer b.Release()
		for i := range int64(1000) {
			id := n*1000 + i
			b.Field(0).(*array.Int64Builder).Append(id)
			b.Field(1).(*array.Float64Builder).Append(float64(id*7919%600) / 3)
			b.Field(2).(*array.StringBuilder).Append(airports[id*31%7])
			b.Field(3).(*array.Int64Builder).Append(1)
		}
		return b.NewRecordBatch()
	}
	var n int64
	commit := func() (time.Duration, error) {
		n++
		rec := batch(n)
		defer rec.Release()
		progress, _ := json.Marshal(map[string]any{"checkpoint": map[string]int64{"records": n * 1000}})
		start := time.Now()
		_, err := tbl.Commit(ctx, store.Commit{Table: "events", Connector: "live", Number: n, Epoch: 1, Progress: progress,
			Records: []arrow.RecordBatch{rec}, Schema: change})
		return time.Since(start), err
	}
	var out []ageResult
	for _, age := range ages {
		for n < age {
			if _, err := commit(); err != nil {
				return nil, err
			}
			if n%100 == 0 {
				tbl.Flush()
			}
		}
		tbl.Flush()
		r := ageResult{commits: age}
		var lat []time.Duration
		for range 200 {
			d, err := commit()
			if err != nil {
				return nil, err
			}
			lat = append(lat, d)
			r.max = max(r.max, d)
		}
		r.p50, r.p95 = pct(lat, 50), pct(lat, 95)
		tbl.Flush()
		var resumes []time.Duration
		for range 5 {
			start := time.Now()
			t, err := store.Open(ctx, loc, store.Options{})
			if err != nil {
				return nil, err
			}
			if _, err := t.Connector(ctx, "events", "live"); err != nil {
				return nil, err
			}
			resumes = append(resumes, time.Since(start))
			t.Close()
		}
		r.resume = pct(resumes, 50)
		var files []*delta.File
		if r.version, files, err = tbl.Snapshot(ctx); err != nil {
			return nil, err
		}
		r.active = len(files)
		r.checkpoint, _ = delta.LastCheckpointVersion(ctx, tbl.Storage())
		es, _ := os.ReadDir(loc)
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ".parquet") {
				r.onDisk++
			}
		}
		out = append(out, r)
		fmt.Fprintf(os.Stderr, "  table age %d commits measured\n", age)
	}
	return out, nil
}

func printAge(rs []ageResult) {
	fmt.Println("commit and resume cost by table age (1,000-row commits, default options: checkpoint every 100, compaction at 50 small files, 7-day retention)")
	fmt.Println("  commits   commit p50   commit p95   commit max   resume   active files   data files on disk   version   last checkpoint")
	for _, r := range rs {
		fmt.Printf("  %7d   %10s   %10s   %10s   %6s   %12d   %18d   %7d   %15d\n", r.commits, r.p50, r.p95, r.max, r.resume.Round(100*time.Microsecond), r.active, r.onDisk, r.version, r.checkpoint)
	}
}
