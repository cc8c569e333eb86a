package datagen_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/datagen"
)

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "u", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "z", Type: arrow.PrimitiveTypes.Int64},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

const cfg = `{"seed": 42, "plan": [{"limit": 20000, "fields": {
  "id": {"strategy": "increment", "range": [100, 1000000]},
  "u": {"strategy": "uniform", "range": [0, 10], "null_percentage": 20},
  "z": {"strategy": "zipf", "range": [0, 100], "e": 1.5},
  "s": {"strategy": "uniform", "values": ["a", "b", "c"]}}}]}`

// generate reads the source from checkpoint to end of input, returning
// every row as [id, u (-1 for NULL), z, s] and the checkpoints.
func generate(t *testing.T, alloc memory.Allocator, cp connectors.Checkpoint, batches int) ([][4]any, connectors.Checkpoint) {
	src, err := datagen.New(connectors.Params{Config: json.RawMessage(cfg), Schema: schema, BatchSize: 1000, Allocator: alloc})
	require.NoError(t, err)
	defer src.Close()
	require.NoError(t, src.Open(context.Background(), cp))
	var rows [][4]any
	for i := 0; batches < 0 || i < batches; i++ {
		b, err := src.Read(context.Background())
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		require.NoError(t, err)
		rec := b.Record
		for r := range int(rec.NumRows()) {
			u := int64(-1)
			if !rec.Column(1).IsNull(r) {
				u = int64(rec.Column(1).(*array.Int32).Value(r))
			}
			rows = append(rows, [4]any{rec.Column(0).(*array.Int64).Value(r), u, rec.Column(2).(*array.Int64).Value(r), rec.Column(3).(*array.String).Value(r)})
		}
		rec.Release()
		cp = b.Checkpoint
	}
	return rows, cp
}

func TestDeterministicResume(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	all, _ := generate(t, alloc, nil, -1)
	require.Len(t, all, 20000)
	head, cp := generate(t, alloc, nil, 7)
	require.JSONEq(t, `{"records": 7000}`, string(cp))
	tail, _ := generate(t, alloc, cp, -1)
	require.Equal(t, all, append(head, tail...), "a resumed generator yields exactly the same records")
}

func TestDistributions(t *testing.T) {
	rows, _ := generate(t, memory.DefaultAllocator, nil, -1)
	nulls, zipf, letters := 0, map[int64]int{}, map[string]int{}
	for i, r := range rows {
		require.Equal(t, int64(100+i), r[0], "increment")
		u := r[1].(int64)
		if u < 0 {
			nulls++
		} else {
			require.True(t, u >= 0 && u < 10, "uniform in range")
		}
		z := r[2].(int64)
		require.True(t, z >= 0 && z < 100)
		zipf[z]++
		letters[r[3].(string)]++
	}
	require.InDelta(t, 0.20, float64(nulls)/20000, 0.02, "null_percentage 20")
	require.Greater(t, zipf[0], zipf[1], "zipf: rank 0 is the most frequent")
	require.Greater(t, zipf[1], zipf[5])
	require.InDelta(t, 0.38, float64(zipf[0])/20000, 0.03, "zipf e=1.5 over 100 values puts ~38% on the first")
	for _, l := range []string{"a", "b", "c"} {
		require.InDelta(t, 1.0/3, float64(letters[l])/20000, 0.02, "uniform over values")
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := datagen.New(connectors.Params{Config: json.RawMessage(`{"plan": [{"fields": {"nope": {}, "u": {"strategy": "gauss"}}}, {"limit": 1}]}`), Schema: schema, BatchSize: 10})
	require.Error(t, err)
	for _, want := range []string{"plan[0].limit: only the last plan may be unbounded", "plan[0].fields.nope: no such column", `plan[0].fields.u: strategy: unknown "gauss"`} {
		require.ErrorContains(t, err, want)
	}
}

// TestHostileConfigs: configs that used to panic (a negative scale over
// values indexed values[-1]; a zipf range past int64 overflowed into a
// huge make) are read or refused, never a panic.
func TestHostileConfigs(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{{Name: "s", Type: arrow.BinaryTypes.String}}, nil)
	src, err := datagen.New(connectors.Params{Config: json.RawMessage(`{"plan": [{"limit": 5, "fields": {"s": {"values": ["a", "b"], "scale": -1}}}]}`),
		Schema: sc, BatchSize: 10})
	require.NoError(t, err)
	require.NoError(t, src.Open(context.Background(), nil))
	b, err := src.Read(context.Background())
	require.NoError(t, err)
	defer b.Record.Release()
	var got []string
	for i := range int(b.Record.NumRows()) {
		got = append(got, b.Record.Column(0).(*array.String).Value(i))
	}
	require.Equal(t, []string{"a", "b", "a", "b", "a"}, got, "a negative scale cycles backwards")

	_, err = datagen.New(connectors.Params{Config: json.RawMessage(`{"plan": [{"fields": {"z": {"strategy": "zipf", "range": [0, 10000000000000000000]}}}]}`),
		Schema: schema, BatchSize: 10})
	require.ErrorContains(t, err, "zipf over 1e+19 values: at most 10,000,000")
}
