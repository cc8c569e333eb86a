package format_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

var flights = arrow.NewSchema([]arrow.Field{
	{Name: "delay", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "distance", Type: arrow.PrimitiveTypes.Int64, Nullable: false},
	{Name: "time", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}, nil)

// readAll streams data through the format and returns the rows as JSON
// objects (with _weight), the parse errors, and the final offset.
func readAll(t *testing.T, f *pipeline.Format, schema *arrow.Schema, data []byte, batch int) ([]map[string]any, []connectors.ParseError, int64) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	p, err := format.NewParser(f, schema)
	require.NoError(t, err)
	rows := format.NewRows(alloc, schema)
	defer rows.Release()
	s := format.NewStream(bytes.NewReader(data), 0, p, rows, batch)
	var out []map[string]any
	var errs []connectors.ParseError
	var off int64
	for {
		c, err := s.Next(true)
		if err == io.EOF {
			return out, errs, off
		}
		require.NoError(t, err)
		require.LessOrEqual(t, c.Record.NumRows(), int64(batch))
		b, err := c.Record.MarshalJSON()
		require.NoError(t, err)
		c.Record.Release()
		var recs []map[string]any
		require.NoError(t, json.Unmarshal(b, &recs))
		out = append(out, recs...)
		errs = append(errs, c.Errors...)
		off = c.Offset
	}
}

func TestJSON(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", "flights-200k.json"))
	require.NoError(t, err)
	rows, errs, off := readAll(t, &pipeline.Format{Name: "json", Config: json.RawMessage(`{"array": true}`)}, flights, data, 10_000)
	require.Empty(t, errs)
	require.Len(t, rows, 200_000)
	require.Equal(t, int64(len(data)), off)
	require.Equal(t, map[string]any{"delay": 0.0, "distance": 1452.0, "time": 0.0, "_weight": 1.0}, rows[0])
	require.Equal(t, 171.0, rows[1]["delay"])
}

func TestJSONMalformed(t *testing.T) {
	in := []byte(`{"delay": 1, "distance": 10}
{"delay": "late", "distance": 20}
{"delay": 3, "distance":
{"delay": 4}
not json
{"delay": 99999999999, "distance": 5}
{"delay": 6, "distance": 60, "extra": true}`)
	rows, errs, _ := readAll(t, nil, flights, in, 100)
	require.Len(t, rows, 2, "only the good records are ingested")
	require.Equal(t, 1.0, rows[0]["delay"])
	require.Equal(t, 6.0, rows[1]["delay"])
	require.Len(t, errs, 5)
	require.Equal(t, "byte 29", errs[0].Position)
	require.Contains(t, errs[0].Message, `column delay: want an integer (int32), got "late"`)
	require.Contains(t, errs[1].Message, "invalid JSON")
	require.Contains(t, errs[2].Message, "column distance: NULL in a NOT NULL column")
	require.Contains(t, errs[3].Message, "invalid JSON")
	require.Contains(t, errs[4].Message, "out of range for int32")
}

func TestJSONInsertDelete(t *testing.T) {
	in := []byte(`{"insert": {"delay": 1, "distance": 10}}
{"delete": {"delay": 1, "distance": 10}}
{"upsert": {"delay": 1, "distance": 10}}
{"insert": {"delay": 1, "Delay": 2, "DELAY": 3, "distance": 10}}`)
	rows, errs, _ := readAll(t, &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "insert_delete"}`)}, flights, in, 100)
	require.Len(t, rows, 2)
	require.Equal(t, 1.0, rows[0]["_weight"])
	require.Equal(t, -1.0, rows[1]["_weight"])
	require.Len(t, errs, 2)
	require.Contains(t, errs[0].Message, `unknown key "upsert"`)
	// Fields that name one column in different case would leave the
	// value to chance: a parse error naming them.
	require.Contains(t, errs[1].Message, `fields ["DELAY" "Delay" "delay"] all name column delay`)
}

func TestCSV(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", "seattle-weather.csv"))
	require.NoError(t, err)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "date", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
		{Name: "precipitation", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "temp_max", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "temp_min", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "wind", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "weather", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	rows, errs, _ := readAll(t, &pipeline.Format{Name: "csv", Config: json.RawMessage(`{"headers": true}`)}, schema, data, 500)
	require.Empty(t, errs)
	require.Len(t, rows, 1461) // 2012-01-01 .. 2015-12-31
	require.Equal(t, "2012-01-01", rows[0]["date"])
	require.Equal(t, "drizzle", rows[0]["weather"])
	require.Equal(t, 10.9, rows[1]["precipitation"])
}

func TestCSVMalformed(t *testing.T) {
	in := []byte("1,10,0.5\nx,20,1\n3,30\n4,\"40\",2\n5,\"bad\"quote,1\n6;60;6\n")
	rows, errs, _ := readAll(t, &pipeline.Format{Name: "csv"}, flights, in, 100)
	require.Len(t, rows, 2)
	require.Equal(t, 4.0, rows[1]["delay"])
	require.Len(t, errs, 4)
	require.Contains(t, errs[0].Message, `column delay`)
	require.Contains(t, errs[1].Message, "want 3 fields, got 2")
	require.Contains(t, errs[2].Message, "invalid CSV")
	require.Equal(t, "byte 9", errs[0].Position)

	_, err := format.NewParser(&pipeline.Format{Name: "csv", Config: json.RawMessage(`{"delimiter": ";;"}`)}, flights)
	require.ErrorContains(t, err, "format.config.delimiter")
}

// TestStreamResume checks that resuming at any checkpoint offset yields
// exactly the rest of the records.
func TestStreamResume(t *testing.T) {
	var in bytes.Buffer
	for i := range 1000 {
		in.WriteString(`{"delay": ` + string(rune('0'+i%10)) + `, "distance": 1}` + "\n")
	}
	p, err := format.NewParser(nil, flights)
	require.NoError(t, err)
	rows := format.NewRows(memory.DefaultAllocator, flights)
	defer rows.Release()
	s := format.NewStream(bytes.NewReader(in.Bytes()), 0, p, rows, 7)
	c, err := s.Next(true)
	require.NoError(t, err)
	require.Equal(t, int64(7), c.Record.NumRows())
	c.Record.Release()
	rest := in.Bytes()[c.Offset:]
	s2 := format.NewStream(bytes.NewReader(rest), c.Offset, p, rows, 1000)
	c2, err := s2.Next(true)
	require.NoError(t, err)
	require.Equal(t, int64(993), c2.Record.NumRows())
	require.Equal(t, int64(in.Len()), c2.Offset)
	c2.Record.Release()
}

func TestParquetResume(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	f, err := os.Open(filepath.Join("..", "..", "..", "shared", "data", "flights-3m.parquet"))
	require.NoError(t, err)
	defer f.Close()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "origin", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "delay", Type: arrow.PrimitiveTypes.Int32, Nullable: true}, // int64 in the file: cast
		{Name: "missing", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	const start = 2_999_990 // inside the last row group
	r, err := format.OpenParquet(t.Context(), f, schema, alloc, 4, start)
	require.NoError(t, err)
	defer r.Close()
	var n int64
	for {
		rec, err := r.Next(t.Context())
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, int64(4), rec.NumCols())
		require.True(t, rec.Column(2).IsNull(0))
		n += rec.NumRows()
		rec.Release()
	}
	require.Equal(t, int64(10), n)
	require.Equal(t, int64(3_000_000), r.Row())
}

func TestJSONDebezium(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	// Events as Debezium's PostgreSQL connector writes them: a snapshot read,
	// a create with the schema wrapper, an update, a delete and its
	// tombstone, then four malformed events.
	data := `{"op":"r","before":null,"after":{"id":1,"name":"ann"},"source":{"lsn":1},"ts_ms":1}
{"schema":{"type":"struct","name":"dbserver1.public.customers.Envelope"},"payload":{"op":"c","before":null,"after":{"id":2,"name":"bob"},"ts_ms":2}}
{"op":"u","before":{"id":1,"name":"ann"},"after":{"id":1,"name":"anne"}}
{"op":"d","before":{"id":2,"name":"bob"},"after":null}
null
{"op":"c","before":null}
{"op":"u","before":null,"after":{"id":1,"name":"x"}}
{"op":"u","before":{"id":1,"name":"anne"},"after":{"id":"one"}}
{"op":"t"}
`
	rows, errs, _ := readAll(t, &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "debezium"}`)}, schema, []byte(data), 100)
	got := make([][3]any, len(rows))
	for i, r := range rows {
		got[i] = [3]any{r["id"], r["name"], r["_weight"]}
	}
	require.Equal(t, [][3]any{
		{1.0, "ann", 1.0},
		{2.0, "bob", 1.0},
		{1.0, "ann", -1.0},
		{1.0, "anne", 1.0},
		{2.0, "bob", -1.0},
	}, got)
	require.Len(t, errs, 4)
	require.Contains(t, errs[0].Message, `op "c" without "after"`)
	require.Contains(t, errs[1].Message, `op "u" without "before"`)
	require.Contains(t, errs[2].Message, `after: column id`) // a wrong type: neither half of the update is applied
	require.Contains(t, errs[3].Message, `unsupported op "t"`)
}

// BenchmarkJSON parses the 200,000 flights of flights-200k.json as
// newline JSON, against arrow-go's own JSON reader on the same bytes.
func BenchmarkJSON(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", "flights-200k.json"))
	require.NoError(b, err)
	var recs []json.RawMessage
	require.NoError(b, json.Unmarshal(data, &recs))
	var nd bytes.Buffer
	for _, r := range recs {
		nd.Write(r)
		nd.WriteByte('\n')
	}
	b.Run("sluice", func(b *testing.B) {
		p, err := format.NewParser(nil, flights)
		require.NoError(b, err)
		rows := format.NewRows(memory.DefaultAllocator, flights)
		defer rows.Release()
		b.SetBytes(int64(nd.Len()))
		for b.Loop() {
			require.Empty(b, p.Parse(nd.Bytes(), 0, rows))
			rows.NewRecordBatch().Release()
		}
	})
	b.Run("arrow-go", func(b *testing.B) {
		b.SetBytes(int64(nd.Len()))
		for b.Loop() {
			jr := array.NewJSONReader(bytes.NewReader(nd.Bytes()), flights, array.WithChunk(-1))
			require.True(b, jr.Next())
			jr.Release()
		}
	})
}

// The fast raw decoder converts as the general path does: names in any
// case, escaped strings, missing fields as NULL, wrong shapes as errors.
func TestJSONRawValues(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	}, nil)
	in := `{"ID": 1, "Name": "tab\there \"quoted\" \u00e9", "ok": true}
{"id": 2}
{"id": 3, "name": {"first": "x"}}
{"id": 4, "ok": "yes"}
[1, 2]
{"id": 5} {"id": 6}
`
	rows, errs, _ := readAll(t, nil, schema, []byte(in), 100)
	require.Equal(t, []map[string]any{
		{"id": 1.0, "name": "tab\there \"quoted\" é", "ok": true, "_weight": 1.0},
		{"id": 2.0, "name": nil, "ok": nil, "_weight": 1.0},
	}, rows)
	require.Len(t, errs, 4)
	require.Contains(t, errs[0].Message, "column name: want a string, got an object")
	require.Contains(t, errs[1].Message, "column ok: want")
	require.Contains(t, errs[2].Message, "want a JSON object")
	require.Contains(t, errs[3].Message, "more than one value")
}
