package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

// pgURI is the machine's PostgreSQL (trust auth, database test).
const pgURI = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// outputFigures are the output connectors' figures: each delivery time is
// from the backfill's last table commit to the workflow's completion (the
// output start_after's the backfill, so it is the output's whole run).
type outputFigures struct {
	pgRows            int64
	pgDeliver, pgCopy time.Duration // postgres_output cdc; psql \copy of the same rows as CSV
	kafkaRecords      int
	kafkaDeliver      time.Duration // kafka_output, JSON insert_delete
	kcat              time.Duration // kcat -P of the same lines
	deltaDeliver      time.Duration // delta_table_output
	latency           []time.Duration
	latencyRate       int
	// postgres_input of the same rows (with an id key) into the table
	// store, keyed and not, against psql \copy (query) TO STDOUT.
	pgInKeyed, pgInPlain, pgInCopy time.Duration
}

// benchOutputs measures postgres_output, kafka_output and
// delta_table_output against their baselines, and the live latency from a
// table commit to the destination's commit.
func benchOutputs(ctx context.Context, c client.Client, dataDir, data, tmp string, kafkaRecords int) (outputFigures, error) {
	var f outputFigures
	conn, err := pgx.Connect(ctx, pgURI)
	if err != nil {
		return f, fmt.Errorf("PostgreSQL on 127.0.0.1:5432 (database test): %w", err)
	}
	defer conn.Close(ctx)
	suffix := rand.IntN(1 << 30)

	// PostgreSQL: 3M flights, cdc, against psql \copy of the same rows.
	dest := fmt.Sprintf("bench_flights_%d", suffix)
	copyDest := dest + "_copy"
	defer conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+dest+", "+copyDest)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+dest+" (date timestamp, delay bigint, distance bigint, origin text, destination text, __feldera_op text, __feldera_ts timestamptz)"); err != nil {
		return f, err
	}
	if f.pgDeliver, err = deliverFlights(ctx, c, dataDir, data, fmt.Sprintf("outpg%d", suffix), pipeline.Transport{Name: "postgres_output",
		Config: json.RawMessage(fmt.Sprintf(`{"uri": %q, "table": %q, "mode": "cdc"}`, pgURI, dest))}); err != nil {
		return f, fmt.Errorf("postgres_output: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+dest).Scan(&f.pgRows); err != nil {
		return f, err
	}
	csvFile := filepath.Join(tmp, "flights.csv")
	if err := flightsCSV(data, csvFile); err != nil {
		return f, err
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+copyDest+" (date timestamp, delay bigint, distance bigint, origin text, destination text)"); err != nil {
		return f, err
	}
	start := time.Now()
	if out, err := exec.Command("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-c",
		fmt.Sprintf(`\copy %s FROM '%s' WITH (FORMAT csv)`, copyDest, csvFile)).CombinedOutput(); err != nil {
		return f, fmt.Errorf("psql \\copy: %w: %s", err, out)
	}
	f.pgCopy = time.Since(start)

	// postgres_input: the same rows, with an id, into the table store.
	src := dest + "_in"
	defer conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+src)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+src+" AS SELECT row_number() OVER () AS id, * FROM "+copyDest+"; ALTER TABLE "+src+" ADD PRIMARY KEY (id)"); err != nil {
		return f, err
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+src); err != nil {
		return f, err
	}
	start = time.Now()
	if out, err := exec.Command("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-c",
		fmt.Sprintf(`\copy (SELECT * FROM %s ORDER BY id) TO STDOUT`, src)).CombinedOutput(); err != nil {
		return f, fmt.Errorf("psql \\copy to stdout: %w: %s", err, out)
	}
	f.pgInCopy = time.Since(start)
	for _, keyed := range []bool{true, false} {
		cfg := map[string]any{"uri": pgURI, "query": "SELECT * FROM " + src}
		if keyed {
			cfg["key_columns"] = []string{"id"}
		}
		raw, _ := json.Marshal(cfg)
		p := flights(data, fmt.Sprintf("pgin%d%v", suffix, keyed))
		p.Tables[0].Columns = append([]pipeline.Column{{Name: "id", Type: "BIGINT"}}, p.Tables[0].Columns...)
		p.Tables[0].Connectors = []pipeline.Connector{{Name: "backfill", Transport: pipeline.Transport{Name: "postgres_input", Config: raw}}}
		if err := pipeline.Validate(p, builtin.Registry()); err != nil {
			return f, err
		}
		start := time.Now()
		if err := execute(ctx, c, p); err != nil {
			return f, fmt.Errorf("postgres_input: %w", err)
		}
		if keyed {
			f.pgInKeyed = time.Since(start)
		} else {
			f.pgInPlain = time.Since(start)
		}
	}

	// Delta: 3M flights into delta_table_output (the baseline, a plain
	// arrow-go read and Parquet write of the same file, is the main one).
	if f.deltaDeliver, err = deliverFlights(ctx, c, dataDir, data, fmt.Sprintf("outdelta%d", suffix), pipeline.Transport{Name: "delta_table_output",
		Config: json.RawMessage(fmt.Sprintf(`{"uri": %q}`, filepath.Join(tmp, "delta-out")))}); err != nil {
		return f, fmt.Errorf("delta_table_output: %w", err)
	}

	// Kafka: kafkaRecords JSON records, against kcat producing the same
	// lines.
	if kafkaRecords > 0 {
		if _, err := exec.LookPath("kcat"); err != nil {
			fmt.Println("  kafka_output: not measured (kcat is not installed)")
		} else if err := benchKafkaOutput(ctx, c, dataDir, data, tmp, kafkaRecords, &f); err != nil {
			return f, fmt.Errorf("kafka_output: %w", err)
		}
	}

	// Live latency: a live datagen input at latencyRate records a second
	// (one table commit a second, Sluice's default commit_interval_ms),
	// delivered to PostgreSQL; arrived is the row's COPY time in the
	// destination's transaction, __feldera_ts the table commit's.
	f.latencyRate = 2000
	live := fmt.Sprintf("bench_live_%d", suffix)
	defer conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+live)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+live+" (id bigint, __feldera_op text, __feldera_ts timestamptz, arrived timestamptz DEFAULT clock_timestamp())"); err != nil {
		return f, err
	}
	p := &pipeline.Pipeline{Name: fmt.Sprintf("outlive%d", suffix), StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name: "events", Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{
			Name: "live", Transport: pipeline.Transport{Name: "datagen", Config: json.RawMessage(fmt.Sprintf(
				`{"plan": [{"limit": %d, "rate": %d, "fields": {"id": {"strategy": "increment"}}}]}`, 30*f.latencyRate, f.latencyRate))},
		}, {
			Name: "pg", Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(fmt.Sprintf(`{"uri": %q, "table": %q, "mode": "cdc"}`, pgURI, live))},
		}},
	}}}
	if err := pipeline.Validate(p, builtin.Registry()); err != nil {
		return f, err
	}
	if err := execute(ctx, c, p); err != nil {
		return f, err
	}
	rows, err := conn.Query(ctx, "SELECT extract(epoch FROM max(arrived) - __feldera_ts)::float8 FROM "+live+" GROUP BY __feldera_ts")
	if err != nil {
		return f, err
	}
	defer rows.Close()
	for rows.Next() {
		var s float64
		if err := rows.Scan(&s); err != nil {
			return f, err
		}
		f.latency = append(f.latency, time.Duration(s*float64(time.Second)))
	}
	sort.Slice(f.latency, func(i, j int) bool { return f.latency[i] < f.latency[j] })
	return f, rows.Err()
}

// deliverFlights backfills the flights file into a new pipeline's table
// and delivers it with an output that start_after's the backfill; it
// returns the time from the last backfill commit to the workflow's end.
func deliverFlights(ctx context.Context, c client.Client, dataDir, data, name string, out pipeline.Transport) (time.Duration, error) {
	p := flights(data, name)
	p.Tables[0].Connectors = append(p.Tables[0].Connectors[:1], pipeline.Connector{Name: "out", StartAfter: pipeline.Labels{"history"}, Transport: out})
	return deliver(ctx, c, dataDir, p)
}

// deliver runs p (its backfill connector named "backfill") to completion
// and returns the time from the backfill's last table commit to the end.
func deliver(ctx context.Context, c client.Client, dataDir string, p *pipeline.Pipeline) (time.Duration, error) {
	if err := pipeline.Validate(p, builtin.Registry()); err != nil {
		return 0, err
	}
	if err := execute(ctx, c, p); err != nil {
		return 0, err
	}
	end := time.Now()
	t, err := store.Open(ctx, store.Location(dataDir, p.Name, p.Tables[0].Name), store.Options{})
	if err != nil {
		return 0, err
	}
	defer t.Close()
	commits, err := t.Commits(ctx)
	if err != nil {
		return 0, err
	}
	var last time.Time
	for _, cm := range commits {
		if cm.Connector == "backfill" && cm.Time.After(last) {
			last = cm.Time
		}
	}
	return end.Sub(last), nil
}

// flightsCSV writes the flights file as CSV (arrow-go's writer), the
// input of the psql \copy baseline.
func flightsCSV(data, dst string) error {
	pf, err := file.OpenParquetFile(data, false)
	if err != nil {
		return err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return err
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return err
	}
	defer rr.Release()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	w := csv.NewWriter(bw, rr.Schema(), csv.WithNullWriter(""))
	for rr.Next() {
		if err := w.Write(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// benchKafkaOutput delivers n generated flights as JSON to kafka_output
// (kfake, 1 partition), then has kcat produce the same lines, read back
// from the topic, into another topic.
func benchKafkaOutput(ctx context.Context, c client.Client, dataDir, data, tmp string, n int, f *outputFigures) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out", "kcat"))
	if err != nil {
		return err
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	p := flights(data, fmt.Sprintf("outkafka%d", rand.IntN(1<<30)))
	gen := p.Tables[0].Connectors[1] // the live datagen's flights, as the backfill
	var cfg map[string]any
	if err := json.Unmarshal(gen.Transport.Config, &cfg); err != nil {
		return err
	}
	plan := cfg["plan"].([]any)[0].(map[string]any)
	plan["limit"] = n
	delete(plan, "rate")
	gen.Transport.Config, _ = json.Marshal(cfg)
	gen.Name, gen.Labels, gen.StartAfter = "backfill", []string{"history"}, nil
	p.Tables[0].Connectors = []pipeline.Connector{gen, {Name: "out", StartAfter: pipeline.Labels{"history"},
		Transport: pipeline.Transport{Name: "kafka_output", Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "out"}`, addr))}}}
	if f.kafkaDeliver, err = deliver(ctx, c, dataDir, p); err != nil {
		return err
	}
	lines := filepath.Join(tmp, "kafka-lines.json")
	read := exec.Command("kcat", "-C", "-b", addr, "-t", "out", "-X", "isolation.level=read_committed", "-e", "-q", "-f", "%s\n")
	outFile, err := os.Create(lines)
	if err != nil {
		return err
	}
	read.Stdout = outFile
	err = read.Run()
	outFile.Close()
	if err != nil {
		return fmt.Errorf("kcat -C: %w", err)
	}
	st, _ := os.Stat(lines)
	f.kafkaRecords = n
	start := time.Now()
	if out, err := exec.Command("kcat", "-P", "-b", addr, "-t", "kcat", "-l", lines).CombinedOutput(); err != nil {
		return fmt.Errorf("kcat -P: %w: %s", err, out)
	}
	f.kcat = time.Since(start)
	fmt.Printf("  (kafka_output wrote %d bytes of JSON lines)\n", st.Size())
	return nil
}

func (f outputFigures) print(base time.Duration, rows int64) {
	fmt.Printf("outputs (delivery: from the backfill's last table commit to the workflow's end)\n")
	fmt.Printf("  postgres_output cdc, %d rows: %6.2fs; psql \\copy of the same rows as CSV: %6.2fs; ratio %.2f   (target <= 1.2)\n",
		f.pgRows, f.pgDeliver.Seconds(), f.pgCopy.Seconds(), f.pgDeliver.Seconds()/f.pgCopy.Seconds())
	if f.kafkaRecords > 0 {
		fmt.Printf("  kafka_output, %d JSON records: %6.2fs; kcat -P of the same lines: %6.2fs; ratio %.2f   (target <= 1.2)\n",
			f.kafkaRecords, f.kafkaDeliver.Seconds(), f.kcat.Seconds(), f.kafkaDeliver.Seconds()/f.kcat.Seconds())
	}
	fmt.Printf("  delta_table_output, %d rows: %6.2fs; plain arrow-go read+write: %6.2fs; throughput ratio %.2f   (target >= 0.8)\n",
		rows, f.deltaDeliver.Seconds(), base.Seconds(), base.Seconds()/f.deltaDeliver.Seconds())
	fmt.Printf("  postgres_input into the table store, %d rows: key_columns [id] %6.2fs, no key %6.2fs; psql \\copy (query) TO STDOUT %6.2fs; ratio %.2f and %.2f   (target <= 1.5)\n",
		f.pgRows, f.pgInKeyed.Seconds(), f.pgInPlain.Seconds(), f.pgInCopy.Seconds(), f.pgInKeyed.Seconds()/f.pgInCopy.Seconds(), f.pgInPlain.Seconds()/f.pgInCopy.Seconds())
	fmt.Printf("  live latency, table commit -> PostgreSQL commit (%d versions at %d records/s): p50 %s  p95 %s  max %s   (target p95 <= 1s)\n",
		len(f.latency), f.latencyRate, pct(f.latency, 50), pct(f.latency, 95), pct(f.latency, 100))
}
