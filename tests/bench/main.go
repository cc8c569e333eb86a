// Command bench measures Sluice on real data, reporting ratios against a
// plain baseline measured in the same run:
//
//   - backfill throughput: flights-3m.parquet into the table store through
//     the whole system (Temporal workflow, Ingest activity, commits), as a
//     ratio to a plain arrow-go loop that reads the same file and writes the
//     same Parquet output with the same writer settings;
//
//   - pause latency: from the connector.pause update to the connector's last
//     committed record (p50, p95);
//
//   - start_after switch latency: from the last backfill commit to the first
//     live commit (p50, p95);
//
//   - Kafka ingestion: newline JSON flights of ~100 bytes from an in-process
//     Kafka (kfake) into the table store, as a ratio to a plain franz-go
//     consume loop with arrow-go's JSON reader and the same Parquet writes,
//     and the Temporal actions spent (history events plus heartbeats) per
//     second and per million records, at two input sizes;
//
//   - snapshot reads: flights-3m.parquet as one S3 object (gofakes3 over
//     HTTP) and as a one-file Delta table, into the table store, each as a
//     ratio to a plain arrow-go read of the same bytes (one GetObject for
//     S3, the data file for Delta) with the same Parquet writes;
//
//   - the table store by age: commit latency (p50, p95, max) and a
//     connector's resume time after 1, 3,600 (an hour of a live connector at
//     1,000 records/s), 10,000 and 100,000 commits, with the active data
//     files and the data files on disk; and the backfill's time against
//     DuckDB's own COPY to Parquet of the same file;
//
//   - outputs: flights-3m.parquet delivered by postgres_output (cdc) as a
//     ratio to psql \copy of the same rows as CSV, 1,000,000 JSON records by
//     kafka_output as a ratio to kcat producing the same lines, flights-3m
//     by delta_table_output as a ratio to the plain arrow-go read and write,
//     and the live latency from a table commit to the PostgreSQL commit
//     (p50, p95);
//
//   - peak RSS of this process (the Temporal server, worker and data path).
//
//     go run ./tests/bench [-data ../shared/data/flights-3m.parquet] [-runs 10] [-kafka 1000000] [-age 100000] [-outputs=false] [-only outputs]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

func main() {
	data := flag.String("data", filepath.Join("..", "shared", "data", "flights-3m.parquet"), "the flights Parquet file")
	runs := flag.Int("runs", 10, "samples for the latency figures")
	kafkaRecords := flag.Int("kafka", 1_000_000, "records for the Kafka figures (also run with a quarter of them); 0 skips them")
	age := flag.Int64("age", 100_000, "the oldest table age (commits) for the commit and resume figures; 0 skips them")
	outputs := flag.Bool("outputs", true, "measure the output connectors (needs PostgreSQL on 127.0.0.1:5432 and psql; kcat for Kafka)")
	only := flag.String("only", "", "run only this group of figures: outputs")
	flag.Parse()
	if *only != "" && *only != "outputs" {
		fmt.Fprintln(os.Stderr, "bench: -only: want outputs")
		os.Exit(2)
	}
	if err := run(*data, *runs, *kafkaRecords, *age, *outputs, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(data string, runs, kafkaRecords int, age int64, outputs bool, only string) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	base, rows, err := baseline(data, filepath.Join(tmp, "baseline.parquet"))
	if err != nil {
		return err
	}
	duck, err := duckdbCopy(data, filepath.Join(tmp, "duckdb.parquet"))
	if err != nil {
		return err
	}
	ts := temporaltest.NewServer()
	defer ts.Stop()
	c := ts.GetDefaultClient()
	dataDir := filepath.Join(tmp, "tables")
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()

	if only == "outputs" {
		f, err := benchOutputs(ctx, c, dataDir, data, tmp, kafkaRecords)
		if err != nil {
			return fmt.Errorf("outputs: %w", err)
		}
		f.print(base, rows)
		fmt.Printf("peak RSS: %s\n", peakRSS())
		return nil
	}

	// Backfill throughput, then the switch to live on the same run.
	p := flights(data, "flights")
	start := time.Now()
	if err := execute(ctx, c, p); err != nil {
		return err
	}
	sluiceTime := time.Since(start)
	switches := []time.Duration{}
	sw, backfilled, err := switchLatency(dataDir, "flights", "flights")
	if err != nil {
		return err
	}
	if backfilled != rows {
		return fmt.Errorf("sluice committed %d backfill rows, want %d", backfilled, rows)
	}
	switches = append(switches, sw)
	for i := 1; i < runs; i++ {
		name := fmt.Sprintf("switch%d", i)
		q := flights(data, name)
		q.Tables[0].Connectors[0] = pipeline.Connector{Name: "backfill", Labels: []string{"history"},
			Transport: pipeline.Transport{Name: "datagen", Config: []byte(`{"plan": [{"limit": 100000}]}`)}}
		if err := execute(ctx, c, q); err != nil {
			return err
		}
		sw, _, err := switchLatency(dataDir, name, "flights")
		if err != nil {
			return err
		}
		switches = append(switches, sw)
	}

	pauses, err := pauseLatency(ctx, c, dataDir, runs)
	if err != nil {
		return err
	}
	rssBeforeLakehouse := peakRSS()
	lakehouse, err := benchLakehouse(ctx, c, dataDir, data, tmp)
	if err != nil {
		return err
	}
	rssBeforeKafka := peakRSS()
	var ages []ageResult
	if age > 0 {
		var list []int64
		for _, a := range []int64{1, 3600, 10_000, 100_000} {
			if a <= age {
				list = append(list, a)
			}
		}
		if ages, err = benchAge(tmp, list); err != nil {
			return fmt.Errorf("table age: %w", err)
		}
	}
	var outs *outputFigures
	if outputs {
		f, err := benchOutputs(ctx, c, dataDir, data, tmp, kafkaRecords)
		if err != nil {
			return fmt.Errorf("outputs: %w", err)
		}
		outs = &f
	}
	var kafka []kafkaResult
	if kafkaRecords > 0 {
		for _, n := range []int{kafkaRecords / 4, kafkaRecords} {
			r, err := benchKafka(ctx, ts.GetFrontendHostPort(), ts.GetDefaultNamespace(), data, tmp, n)
			if err != nil {
				return fmt.Errorf("kafka: %w", err)
			}
			kafka = append(kafka, r)
		}
	}

	fmt.Printf("backfill of %d rows (%s)\n", rows, filepath.Base(data))
	fmt.Printf("  plain arrow-go read+write:   %8.2fs  %10.0f rows/s\n", base.Seconds(), float64(rows)/base.Seconds())
	fmt.Printf("  sluice (workflow+activity):  %8.2fs  %10.0f rows/s\n", sluiceTime.Seconds(), float64(rows)/sluiceTime.Seconds())
	fmt.Printf("  throughput ratio (sluice/plain): %.2f   (target >= 0.8)\n", base.Seconds()/sluiceTime.Seconds())
	if duck > 0 {
		fmt.Printf("  DuckDB COPY ... TO ... (FORMAT parquet): %8.2fs  %10.0f rows/s (best of 3, timed inside node)\n", duck.Seconds(), float64(rows)/duck.Seconds())
		fmt.Printf("  time ratio (sluice/DuckDB): %.2f   (target <= 1.5)\n", sluiceTime.Seconds()/duck.Seconds())
	} else {
		fmt.Println("  DuckDB COPY: not measured (npm install in tests/duckdb first)")
	}
	fmt.Printf("pause latency, update -> last commit (%d samples): p50 %s  p95 %s   (target p95 <= 2s)\n", len(pauses), pct(pauses, 50), pct(pauses, 95))
	fmt.Printf("start_after switch, last backfill commit -> first live commit (%d samples): p50 %s  p95 %s   (target p95 <= 1s)\n", len(switches), pct(switches, 50), pct(switches, 95))
	for _, r := range lakehouse {
		r.print()
	}
	for _, r := range kafka {
		r.print()
	}
	if len(ages) > 0 {
		printAge(ages)
	}
	if outs != nil {
		outs.print(base, rows)
	}
	fmt.Printf("peak RSS (whole process: Temporal server, worker, data path) after the backfill and latency figures: %s   (target <= 500 MB)\n", rssBeforeLakehouse)
	fmt.Printf("peak RSS after the S3 and Delta figures (the in-process S3 server and the bench hold flights-3m.parquet): %s\n", rssBeforeKafka)
	fmt.Printf("peak RSS at the end, with an in-process Kafka broker holding the messages: %s\n", peakRSS())
	return nil
}

// baseline reads the file with pqarrow and writes the same Parquet output
// (columns plus the weight column, same writer properties), like a commit.
func baseline(src, dst string) (time.Duration, int64, error) {
	start := time.Now()
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	rows, err := copyParquet(f, dst)
	return time.Since(start), rows, err
}

// copyParquet reads Parquet from r with pqarrow and writes it to dst with
// the weight column, as the table store commits it; it returns the rows.
func copyParquet(r parquet.ReaderAtSeeker, dst string) (int64, error) {
	f, err := file.NewParquetReader(r)
	if err != nil {
		return 0, err
	}
	fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{BatchSize: pipeline.DefaultMaxBatchSize}, memory.DefaultAllocator)
	if err != nil {
		return 0, err
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return 0, err
	}
	defer rr.Release()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	schema := pipeline.WithWeight(rr.Schema())
	w, err := pqarrow.NewFileWriter(schema, keepOpen{out}, delta.WriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return 0, err
	}
	var rows int64
	for rr.Next() {
		rec := rr.RecordBatch()
		cols := append(append([]arrow.Array{}, rec.Columns()...), format.Ones(memory.DefaultAllocator, int(rec.NumRows())))
		withWeight := array.NewRecordBatch(schema, cols, rec.NumRows())
		if err := w.WriteBuffered(withWeight); err != nil {
			return 0, err
		}
		cols[len(cols)-1].Release()
		withWeight.Release()
		rows += rec.NumRows()
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	if err := out.Sync(); err != nil {
		return 0, err
	}
	return rows, nil
}

// flights is examples/flights.yaml reading data, named name, with a short
// live phase, completing at end of input.
func flights(data, name string) *pipeline.Pipeline {
	p, _, err := pipeline.LoadFile(filepath.Join("examples", "flights.yaml"))
	if err != nil {
		panic(err)
	}
	p.Name = name
	p.StopAtEndOfInput = true
	p.Tables[0].Connectors[0].Transport.Config = []byte(fmt.Sprintf(`{"path": %q}`, data))
	p.Tables[0].Connectors[1].Transport.Config = []byte(`{"plan": [{"limit": 1000, "rate": 10000}]}`)
	if err := pipeline.Validate(p, builtin.Registry()); err != nil {
		panic(err)
	}
	return p
}

func execute(ctx context.Context, c client.Client, p *pipeline.Pipeline) error {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: pipeline.WorkflowID(p.Name), TaskQueue: sluice.DefaultTaskQueue},
		workflows.WorkflowName, workflows.Input{Pipeline: *p})
	if err != nil {
		return err
	}
	return run.Get(ctx, nil)
}

// switchLatency returns the time from the last backfill commit to the first
// live commit, and the backfill's rows.
func switchLatency(dataDir, p, table string) (time.Duration, int64, error) {
	t, err := store.Open(context.Background(), store.Location(dataDir, p, table), store.Options{})
	if err != nil {
		return 0, 0, err
	}
	commits, err := t.Commits(context.Background())
	if err != nil {
		return 0, 0, err
	}
	var lastBackfill, firstLive time.Time
	var rows int64
	for _, c := range commits {
		switch c.Connector {
		case "backfill":
			rows += c.Rows
			if c.Time.After(lastBackfill) {
				lastBackfill = c.Time
			}
		case "live":
			if c.Rows > 0 && (firstLive.IsZero() || c.Time.Before(firstLive)) {
				firstLive = c.Time
			}
		}
	}
	return firstLive.Sub(lastBackfill), rows, nil
}

// pauseLatency runs a fast unbounded generator and pauses it runs times,
// measuring from the pause update to the last record committed.
func pauseLatency(ctx context.Context, c client.Client, dataDir string, runs int) ([]time.Duration, error) {
	p := &pipeline.Pipeline{Name: "pause", Tables: []pipeline.Table{{
		Name:    "t",
		Columns: []pipeline.Column{{Name: "a", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{Name: "gen", Transport: pipeline.Transport{Name: "datagen",
			Config: []byte(`{"plan": [{"rate": 200000}]}`)}}},
	}}}
	if _, err := sluice.Start(ctx, c, p, sluice.StartOptions{}); err != nil {
		return nil, err
	}
	var t *store.Table
	ref := &workflows.ConnectorRef{Table: "t", Connector: "gen"}
	var out []time.Duration
	for range runs {
		time.Sleep(1500 * time.Millisecond)
		sent := time.Now()
		if err := sluice.Command(ctx, c, "pause", workflows.ConnectorPause, ref); err != nil {
			return nil, err
		}
		// Wait for the activity to return: it has committed what it read.
		for {
			d, err := c.DescribeWorkflowExecution(ctx, "pipeline-pause", "")
			if err != nil {
				return nil, err
			}
			if len(d.PendingActivities) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if t == nil {
			var err error
			if t, err = store.Open(ctx, store.Location(dataDir, "pause", "t"), store.Options{}); err != nil {
				return nil, err
			}
		}
		last, err := t.Connector(ctx, "t", "gen")
		if err != nil || last.Commit == 0 {
			return nil, fmt.Errorf("no commit: %v", err)
		}
		out = append(out, max(0, last.Time.Sub(sent)))
		if err := sluice.Command(ctx, c, "pause", workflows.ConnectorStart, ref); err != nil {
			return nil, err
		}
	}
	return out, sluice.Command(ctx, c, "pause", workflows.PipelineStop, nil)
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Millisecond)
}

func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

// keepOpen lets the file be synced after the Parquet writer closes, as the
// table store does.
type keepOpen struct{ *os.File }

func (keepOpen) Close() error { return nil }
