package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

// lakehouseResult is one snapshot-read figure: Sluice against the plain
// arrow-go read of the same bytes, with the same Parquet writes.
type lakehouseResult struct {
	what         string
	rows         int64
	plain, sluic time.Duration
}

func (r lakehouseResult) print() {
	fmt.Printf("%s: %d rows\n", r.what, r.rows)
	fmt.Printf("  plain arrow-go read+write:   %8.2fs  %10.0f rows/s\n", r.plain.Seconds(), float64(r.rows)/r.plain.Seconds())
	fmt.Printf("  sluice (workflow+activity):  %8.2fs  %10.0f rows/s\n", r.sluic.Seconds(), float64(r.rows)/r.sluic.Seconds())
	fmt.Printf("  throughput ratio (sluice/plain): %.2f   (target >= 0.8)\n", r.plain.Seconds()/r.sluic.Seconds())
}

// benchLakehouse reads flights-3m.parquet as one S3 object (gofakes3 over
// HTTP, through the AWS SDK) and as a one-file Delta table, each into the
// table store through the whole system, and the same bytes with plain
// arrow-go: the object fetched with one GetObject, the Delta data file
// opened directly.
func benchLakehouse(ctx context.Context, c client.Client, dataDir, data, tmp string) ([]lakehouseResult, error) {
	raw, err := os.ReadFile(data)
	if err != nil {
		return nil, err
	}
	srv := fixture.StartS3()
	defer srv.Close()
	if err := srv.PutObject("lake", "flights/flights-3m.parquet", raw); err != nil {
		return nil, err
	}
	settings := s3.Settings{EndpointURL: srv.Endpoint, Region: "us-east-1", AccessKeyID: "bench", SecretAccessKey: "bench"}

	// S3: plain = GetObject into memory, pqarrow, same writes.
	start := time.Now()
	cl, err := settings.Client(ctx)
	if err != nil {
		return nil, err
	}
	obj, err := cl.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("lake"), Key: aws.String("flights/flights-3m.parquet")})
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		return nil, err
	}
	rows, err := copyParquet(bytes.NewReader(body), filepath.Join(tmp, "s3-baseline.parquet"))
	if err != nil {
		return nil, err
	}
	s3Plain := time.Since(start)
	cfg, _ := json.Marshal(map[string]any{"bucket_name": "lake", "prefix": "flights/", "endpoint_url": srv.Endpoint, "region": "us-east-1",
		"aws_access_key_id": "bench", "aws_secret_access_key": "bench"})
	s3Time, err := snapshotRun(ctx, c, dataDir, "bench-s3", pipeline.Transport{Name: "s3_input", Config: cfg}, &pipeline.Format{Name: "parquet"}, rows)
	if err != nil {
		return nil, fmt.Errorf("s3_input: %w", err)
	}

	// Delta: a one-file table; plain = pqarrow on its data file.
	example, _, err := pipeline.LoadFile(filepath.Join("examples", "flights.yaml"))
	if err != nil {
		return nil, err
	}
	schema, err := example.Tables[0].Schema()
	if err != nil {
		return nil, err
	}
	d, err := fixture.NewDelta(filepath.Join(tmp, "delta-flights"), schema)
	if err != nil {
		return nil, err
	}
	paths, err := d.Commit([][]byte{raw})
	if err != nil {
		return nil, err
	}
	deltaPlain, _, err := baseline(filepath.Join(d.Dir, paths[0]), filepath.Join(tmp, "delta-baseline.parquet"))
	if err != nil {
		return nil, err
	}
	cfg, _ = json.Marshal(map[string]any{"uri": d.Dir, "mode": "snapshot"})
	deltaTime, err := snapshotRun(ctx, c, dataDir, "bench-delta", pipeline.Transport{Name: "delta_table_input", Config: cfg}, nil, rows)
	if err != nil {
		return nil, fmt.Errorf("delta_table_input: %w", err)
	}
	return []lakehouseResult{
		{"s3_input snapshot, flights-3m.parquet as one S3 object (gofakes3 over HTTP)", rows, s3Plain, s3Time},
		{"delta_table_input snapshot, flights-3m.parquet as a one-file Delta table", rows, deltaPlain, deltaTime},
	}, nil
}

// snapshotRun runs the flights pipeline with one bounded connector and
// checks that the table store committed want rows.
func snapshotRun(ctx context.Context, c client.Client, dataDir, name string, tr pipeline.Transport, f *pipeline.Format, want int64) (time.Duration, error) {
	p, _, err := pipeline.LoadFile(filepath.Join("examples", "flights.yaml"))
	if err != nil {
		return 0, err
	}
	p.Name, p.StopAtEndOfInput = name, true
	p.Tables[0].Connectors = []pipeline.Connector{{Name: "snapshot", Transport: tr, Format: f}}
	if err := pipeline.Validate(p, builtin.Registry()); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := execute(ctx, c, p); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	t, err := store.Open(context.Background(), store.Location(dataDir, name, "flights"), store.Options{})
	if err != nil {
		return 0, err
	}
	commits, err := t.Commits(context.Background())
	if err != nil {
		return 0, err
	}
	var rows int64
	for _, cm := range commits {
		rows += cm.Rows
	}
	if rows != want {
		return 0, fmt.Errorf("committed %d rows, want %d", rows, want)
	}
	return elapsed, nil
}
