package datagen_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/datagen"
	"github.com/sluicehq/sluice/pipeline"
)

// fuzzSchema has a column of every type datagen generates. id, z and n
// are NOT NULL; id, u, z and s are the columns of datagen_test.go's
// configs, so that those seed the fuzzer as they are.
var fuzzSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "u", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "z", Type: arrow.PrimitiveTypes.Int64},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "amount", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	{Name: "n", Type: arrow.PrimitiveTypes.Int32},
	{Name: "small", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
	{Name: "mid", Type: arrow.PrimitiveTypes.Int16, Nullable: true},
	{Name: "r", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "t", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
}, nil)

// Bounds of one fuzzed config's run: batches read, time per Read (a
// config's rate may make it wait), and bytes allocated in all (New
// builds zipf tables, which pipeline validation pays for too).
const (
	fuzzBatches  = 3
	fuzzReadWait = 20 * time.Millisecond
	fuzzMaxAlloc = 256 << 20
)

// FuzzNew builds a datagen source from a fuzzed config. New and the
// source never panic; New allocates a bounded amount; a config New
// accepts generates: Read returns batches of at most BatchSize rows in
// the table's change schema, with weight +1, valid UTF-8 strings and no
// NULL in a NOT NULL column, and checkpoints {"records": N} counting
// them, or end of input once exactly the plans' limits are generated
// (never an error: New is where a config is refused); and generation is
// deterministic, so a source opened at a batch's checkpoint generates
// the same records as the source that went on.
func FuzzNew(f *testing.F) {
	f.Add([]byte(`{"seed": 42, "plan": [{"limit": 20000, "fields": {"id": {"strategy": "increment", "range": [100, 1000000]}, "u": {"strategy": "uniform", "range": [0, 10], "null_percentage": 20}, "z": {"strategy": "zipf", "range": [0, 100], "e": 1.5}, "s": {"strategy": "uniform", "values": ["a", "b", "c"]}}}]}`), uint8(9))
	f.Fuzz(func(t *testing.T, config []byte, batch uint8) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > fuzzMaxAlloc {
				t.Fatalf("config %s allocated %d MB", config, n>>20)
			}
		}()
		alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer alloc.AssertSize(t, 0)
		p := connectors.Params{Endpoint: "t.gen", Config: config, Schema: fuzzSchema, BatchSize: 1 + int(batch)%64, Allocator: alloc}
		src, err := datagen.New(p)
		if err != nil {
			return
		}
		total, bounded := fuzzLimit(config)
		first := fuzzGenerate(t, src, nil, fuzzBatches, p.BatchSize, total, bounded)
		if len(first) < 2 {
			return
		}
		// Resume at the first batch's checkpoint, in a new source.
		again, err := datagen.New(p)
		if err != nil {
			t.Fatalf("New accepted the config once, then: %v", err)
		}
		resumed := fuzzGenerate(t, again, first[0].checkpoint, 1, p.BatchSize, total, bounded)
		var want, got []string
		for _, b := range first[1:] {
			want = append(want, b.rows...)
		}
		for _, b := range resumed {
			got = append(got, b.rows...)
		}
		for i := range min(len(want), len(got)) {
			if want[i] != got[i] {
				t.Fatalf("record %d after checkpoint %s: resumed %q, went on %q", i, first[0].checkpoint, got[i], want[i])
			}
		}
	})
}

// fuzzBatch is one batch read: its rows as text and its checkpoint.
type fuzzBatch struct {
	rows       []string
	checkpoint connectors.Checkpoint
}

// fuzzGenerate opens src at cp and reads up to n batches, checking each.
// total is the sum of the plans' limits when bounded.
func fuzzGenerate(t *testing.T, src connectors.Source, cp connectors.Checkpoint, n, batchSize int, total int64, bounded bool) []fuzzBatch {
	defer src.Close()
	if err := src.Open(context.Background(), cp); err != nil {
		t.Fatalf("Open at %s: %v", cp, err)
	}
	var records int64
	if cp != nil {
		var c struct{ Records int64 }
		if err := json.Unmarshal(cp, &c); err != nil {
			t.Fatal(err)
		}
		records = c.Records
	}
	var out []fuzzBatch
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzReadWait)
		b, err := src.Read(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return out // a rate makes it wait: enough
		case errors.Is(err, connectors.ErrEndOfInput):
			if !bounded || records != total {
				t.Fatalf("end of input after %d records; the plans' limits add up to %d (bounded: %v)", records, total, bounded)
			}
			return out
		case err != nil:
			t.Fatalf("Read after %d records: %v", records, err)
		}
		rec := b.Record
		if !rec.Schema().Equal(pipeline.WithWeight(fuzzSchema)) {
			t.Fatalf("batch schema %s", rec.Schema())
		}
		if rec.NumRows() < 1 || rec.NumRows() > int64(batchSize) {
			t.Fatalf("batch of %d records, BatchSize %d", rec.NumRows(), batchSize)
		}
		records += rec.NumRows()
		var c struct {
			Records *int64 `json:"records"`
		}
		if err := json.Unmarshal(b.Checkpoint, &c); err != nil || c.Records == nil || *c.Records != records {
			t.Fatalf("checkpoint %s after %d records", b.Checkpoint, records)
		}
		fb := fuzzBatch{checkpoint: b.Checkpoint}
		for i := range int(rec.NumRows()) {
			var sb strings.Builder
			for ci, col := range rec.Columns() {
				f := rec.Schema().Field(ci)
				if col.IsNull(i) && !f.Nullable {
					t.Fatalf("NULL in NOT NULL column %s", f.Name)
				}
				if s, ok := col.(*array.String); ok && s.IsValid(i) && !utf8.ValidString(s.Value(i)) {
					t.Fatalf("column %s holds invalid UTF-8 %q", f.Name, s.Value(i))
				}
				sb.WriteString(col.ValueStr(i))
				sb.WriteByte('|')
			}
			if w := rec.Column(len(fuzzSchema.Fields())).(*array.Int64).Value(i); w != 1 {
				t.Fatalf("weight %d", w)
			}
			fb.rows = append(fb.rows, sb.String())
		}
		rec.Release()
		out = append(out, fb)
	}
	return out
}

// fuzzLimit returns the sum of the plans' limits, and whether every plan
// has one and the sum fits an int64.
func fuzzLimit(config []byte) (int64, bool) {
	var cfg datagen.Config
	if err := json.Unmarshal(config, &cfg); err != nil {
		return 0, false
	}
	if len(cfg.Plan) == 0 {
		return 0, false
	}
	var total int64
	for _, p := range cfg.Plan {
		if p.Limit == nil || *p.Limit > math.MaxInt64-total {
			return 0, false
		}
		total += *p.Limit
	}
	return total, true
}
