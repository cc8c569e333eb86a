package s3_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
)

var flightsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "date", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	{Name: "delay", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "distance", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "origin", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "destination", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// jsonSchema is flights-200k.json's.
var jsonSchema = arrow.NewSchema([]arrow.Field{
	{Name: "delay", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "distance", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "time", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}, nil)

func newSource(t *testing.T, cfg string, f *pipeline.Format, schema *arrow.Schema, batch int) (connectors.Source, *memory.CheckedAllocator) {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	src, err := s3.New(connectors.Params{Endpoint: "t.s3", Config: json.RawMessage(cfg), Format: f, Schema: schema, BatchSize: batch, Allocator: alloc})
	require.NoError(t, err)
	return src, alloc
}

// drainFrom opens a new source at cp (nil: resolved) and reads up to
// maxRecords (0: all).
func drainFrom(t *testing.T, cfg string, f *pipeline.Format, schema *arrow.Schema, cp connectors.Checkpoint, maxRecords int64) fixture.Drained {
	t.Helper()
	p := connectors.Params{Endpoint: "t.s3", Config: json.RawMessage(cfg), Format: f, Schema: schema, BatchSize: 10_000}
	return fixture.ReadSource(t, s3.New, p, cp, maxRecords, false)
}

func parquetHash(t *testing.T, path string) fixture.Hash {
	var h fixture.Hash
	require.NoError(t, fixture.ReadParquet(context.Background(), path, 1<<16, func(rec arrow.RecordBatch) error {
		h.Add(rec, 5, -1)
		return nil
	}))
	return h
}

// TestFlightsParquetObjects splits flights-3m.parquet into five objects and
// reads them through the AWS SDK over HTTP: every flight once, then the same
// after stopping in the middle of an object and resuming from its checkpoint.
func TestFlightsParquetObjects(t *testing.T) {
	src := fixture.Shared(t, "flights-3m.parquet")
	parts, err := fixture.SplitParquet(context.Background(), src, 5)
	require.NoError(t, err)
	srv := fixture.NewS3(t)
	srv.CreateBucket(t, "lake")
	for i, p := range parts {
		srv.Put(t, "lake", fmt.Sprintf("flights/part-%d.parquet", i), p)
	}
	srv.Put(t, "lake", "other/ignored.json", []byte(`{"x":1}`))
	cfg := fmt.Sprintf(`{"bucket_name": "lake", "prefix": "flights/", %s}`, srv.Config())
	pq := &pipeline.Format{Name: "parquet"}
	want := parquetHash(t, src)

	all := drainFrom(t, cfg, pq, flightsSchema, nil, 0)
	require.True(t, all.EndOfInput)
	require.Equal(t, int64(3_000_000), all.Hash.Count)
	require.Equal(t, want, all.Hash)

	// Stop in the middle of the third object, resume from the checkpoint.
	first := drainFrom(t, cfg, pq, flightsSchema, nil, 1_500_000)
	var cp s3.Checkpoint
	require.NoError(t, json.Unmarshal(first.Checkpoint, &cp))
	require.Equal(t, "flights/part-2.parquet", cp.Key)
	require.False(t, cp.Done)
	require.Equal(t, "flights/part-4.parquet", cp.EndKey)
	rest := drainFrom(t, cfg, pq, flightsSchema, first.Checkpoint, 0)
	require.Equal(t, want.Count, first.Hash.Count+rest.Hash.Count)
	require.Equal(t, want.Sum, first.Hash.Sum+rest.Hash.Sum, "every row exactly once across the resume")

	// An object written after the first start, under a later key, is not read.
	srv.Put(t, "lake", "flights/part-9.parquet", parts[0])
	again := drainFrom(t, cfg, pq, flightsSchema, first.Checkpoint, 0)
	require.Equal(t, rest.Hash, again.Hash)
}

// TestJSONObjectsResume reads flights-200k.json cut into three objects,
// stopping at every possible kind of position: mid-object and at an
// object's end.
func TestJSONObjectsResume(t *testing.T) {
	data, err := os.ReadFile(fixture.Shared(t, "flights-200k.json")) // one JSON array
	require.NoError(t, err)
	var records []json.RawMessage
	require.NoError(t, json.Unmarshal(data, &records))
	lines := make([][]byte, len(records))
	for i, r := range records {
		lines[i] = append(r, '\n')
	}
	srv := fixture.NewS3(t)
	srv.CreateBucket(t, "raw")
	third := len(lines) / 3
	srv.Put(t, "raw", "2024/a.json", bytes.Join(lines[:third], nil))
	srv.Put(t, "raw", "2024/b.json", append(bytes.Join(lines[third:2*third], nil), []byte("{\"delay\": \"late\"}\n")...))
	srv.Put(t, "raw", "2024/c.json", bytes.Join(lines[2*third:], nil))
	cfg := fmt.Sprintf(`{"bucket_name": "raw", "prefix": "2024/", %s}`, srv.Config())
	f := &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "raw"}`)}

	all := drainFrom(t, cfg, f, jsonSchema, nil, 0)
	require.Equal(t, int64(200_000), all.Hash.Count)
	require.Len(t, all.Errors, 1)
	require.Contains(t, all.Errors[0].Position, "2024/b.json byte ")

	for _, stop := range []int64{25_000, 66_666, 150_000} {
		p := connectors.Params{Endpoint: "t.s3", Config: json.RawMessage(cfg), Format: f, Schema: jsonSchema, BatchSize: 10_000}
		got := fixture.ReadInSteps(t, s3.New, p, stop, false)
		require.Equal(t, all.Hash, got.Hash, "stopping every %d records", stop)
	}
}

func TestMixedFormatsRejected(t *testing.T) {
	srv := fixture.NewS3(t)
	srv.CreateBucket(t, "mixed")
	srv.Put(t, "mixed", "in/a.parquet", []byte("PAR1"))
	srv.Put(t, "mixed", "in/b.csv", []byte("1,2\n"))
	srv.Put(t, "mixed", "in/c.json", []byte(`{}`))
	src, _ := newSource(t, fmt.Sprintf(`{"bucket_name": "mixed", "prefix": "in/", %s}`, srv.Config()), &pipeline.Format{Name: "parquet"}, flightsSchema, 100)
	_, err := src.(connectors.Resolver).Resolve(context.Background())
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.EqualError(t, err, "s3://mixed/in/ holds objects that are not parquet: in/b.csv (csv), in/c.json (json); give each format its own prefix or connector")
}

func TestMissingBucketAndKeyAreFatal(t *testing.T) {
	srv := fixture.NewS3(t)
	srv.CreateBucket(t, "here")
	for _, tc := range []struct{ name, cfg, want string }{
		{"missing bucket", `"bucket_name": "nowhere", "prefix": ""`, "NoSuchBucket"},
		{"missing key", `"bucket_name": "here", "key": "none.json"`, "s3://here/none.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := newSource(t, fmt.Sprintf(`{%s, %s}`, tc.cfg, srv.Config()), nil, jsonSchema, 100)
			err := src.Open(context.Background(), nil)
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("unreachable endpoint", func(t *testing.T) {
		src, _ := newSource(t, `{"bucket_name": "b", "prefix": "", "endpoint_url": "http://127.0.0.1:1", "no_sign_request": true}`, nil, jsonSchema, 100)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := src.Open(ctx, nil)
		require.ErrorIs(t, err, connectors.ErrFatal)
		require.ErrorContains(t, err, "connection refused")
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"nothing", `{}`, "transport.config.bucket_name: required\ntransport.config.key: set key (one object) or prefix (every object under it)"},
		{"both", `{"bucket_name": "b", "key": "k", "prefix": "p"}`, "transport.config.prefix: set key or prefix, not both"},
		{"endpoint", `{"bucket_name": "b", "key": "k", "endpoint_url": "localhost:9000"}`, `transport.config.endpoint_url: want an http:// or https:// URL, got "localhost:9000"`},
		{"half credentials", `{"bucket_name": "b", "key": "k", "aws_access_key_id": "x"}`, "transport.config.aws_secret_access_key: aws_access_key_id and aws_secret_access_key go together"},
		{"unknown", `{"bucket_name": "b", "key": "k", "bucket": "x"}`, `transport.config: json: unknown field "bucket"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, fixture.ConfigError("s3_input", s3.New, tc.cfg, jsonSchema))
		})
	}
}
