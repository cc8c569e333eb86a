package format_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

// allTypes has a column of every SQL type Sluice maps.
func allTypes(t *testing.T) *arrow.Schema {
	t.Helper()
	p := pipeline.Table{Name: "t", Columns: []pipeline.Column{
		{Name: "b", Type: "BOOLEAN"},
		{Name: "i8", Type: "TINYINT"},
		{Name: "i16", Type: "SMALLINT"},
		{Name: "i", Type: "INT"},
		{Name: "big", Type: "BIGINT"},
		{Name: "r", Type: "REAL"},
		{Name: "d", Type: "DOUBLE"},
		{Name: "dec", Type: "DECIMAL(10,2)"},
		{Name: "s", Type: "VARCHAR"},
		{Name: "dt", Type: "DATE"},
		{Name: "tm", Type: "TIME"},
		{Name: "ts", Type: "TIMESTAMP"},
		{Name: "bin", Type: "VARBINARY"},
	}}
	s, err := p.Schema()
	require.NoError(t, err)
	return s
}

// changes parses rows written as insert_delete JSON (with the table's
// columns) into a change record batch: the test's way to build batches.
func changes(t *testing.T, alloc memory.Allocator, schema *arrow.Schema, lines string) arrow.RecordBatch {
	t.Helper()
	p, err := format.NewParser(&pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "insert_delete"}`)}, schema)
	require.NoError(t, err)
	rows := format.NewRows(alloc, schema)
	defer rows.Release()
	require.Empty(t, p.Parse([]byte(lines), 0, rows))
	return rows.NewRecordBatch()
}

// rowsOf renders every row of rec (weight included) as text.
func rowsOf(rec arrow.RecordBatch) []string {
	var out []string
	for i := range int(rec.NumRows()) {
		parts := make([]string, rec.NumCols())
		for j := range int(rec.NumCols()) {
			if rec.Column(j).IsNull(i) {
				parts[j] = "NULL"
			} else {
				parts[j] = rec.Column(j).ValueStr(i)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

const sample = `{"insert": {"b": true, "i8": -8, "i16": 300, "i": 7, "big": 9007199254740993, "r": 1.5, "d": 0.1, "dec": "12345678.91", "s": "a \"quoted\",\nline\t\u0001 é", "dt": "2024-02-29", "tm": "13:14:15.123456", "ts": "2024-02-29 13:14:15.000001", "bin": "AAEC/w=="}}
{"insert": {"b": null, "i8": null, "i16": null, "i": null, "big": null, "r": null, "d": null, "dec": null, "s": null, "dt": null, "tm": null, "ts": null, "bin": null}}
{"delete": {"b": false, "i8": 0, "i16": 0, "i": -1, "big": -9223372036854775808, "r": -0.25, "d": 1e300, "dec": "-0.05", "s": "", "dt": "1969-12-31", "tm": "00:00:00", "ts": "1900-01-01 00:00:00", "bin": ""}}
`

func TestEncodeRoundTrip(t *testing.T) {
	schema := allTypes(t)
	tests := []struct {
		name    string
		out, in string // format configs: the encoder's, the parser's
		fmtName string
		wantRaw int // rows the raw format cannot encode
	}{
		{name: "json insert_delete (default)", fmtName: "json", out: `{}`, in: `{"update_format": "insert_delete"}`},
		{name: "json insert_delete array", fmtName: "json", out: `{"array": true}`, in: `{"update_format": "insert_delete", "array": true}`},
		{name: "json debezium", fmtName: "json", out: `{"update_format": "debezium"}`, in: `{"update_format": "debezium"}`},
		{name: "json raw", fmtName: "json", out: `{"update_format": "raw"}`, in: `{"update_format": "raw"}`, wantRaw: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			rec := changes(t, alloc, schema, sample)
			defer rec.Release()

			enc, err := format.NewEncoder(&pipeline.Format{Name: tt.fmtName, Config: json.RawMessage(tt.out)}, schema)
			require.NoError(t, err)
			out, failed, err := enc.EncodeBatch(nil, rec)
			require.Equal(t, tt.wantRaw, failed)
			if tt.wantRaw > 0 {
				require.ErrorIs(t, err, format.ErrRawDelete)
			} else {
				require.NoError(t, err)
			}

			p, err := format.NewParser(&pipeline.Format{Name: tt.fmtName, Config: json.RawMessage(tt.in)}, schema)
			require.NoError(t, err)
			rows := format.NewRows(alloc, schema)
			defer rows.Release()
			require.Empty(t, p.Parse(out, 0, rows), string(out))
			back := rows.NewRecordBatch()
			defer back.Release()
			want := rowsOf(rec)
			require.Equal(t, want[:len(want)-tt.wantRaw], rowsOf(back), string(out))
		})
	}
}

func TestEncodeCSVRoundTrip(t *testing.T) {
	schema := allTypes(t)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	rec := changes(t, alloc, schema, sample)
	defer rec.Release()
	for _, delim := range []string{",", ";"} {
		enc, err := format.NewEncoder(&pipeline.Format{Name: "csv", Config: json.RawMessage(`{"delimiter": "` + delim + `"}`)}, schema)
		require.NoError(t, err)
		out, failed, err := enc.EncodeBatch(nil, rec)
		require.NoError(t, err)
		require.Zero(t, failed)
		// The weight is the last field: read it back as a column of its own.
		withW := arrow.NewSchema(append(schema.Fields(), arrow.Field{Name: "w", Type: arrow.PrimitiveTypes.Int64, Nullable: true}), nil)
		p, err := format.NewParser(&pipeline.Format{Name: "csv", Config: json.RawMessage(`{"delimiter": "` + delim + `"}`)}, withW)
		require.NoError(t, err)
		rows := format.NewRows(alloc, withW)
		require.Empty(t, p.Parse(out, 0, rows), string(out))
		back := rows.NewRecordBatch()
		rows.Release()
		got := rowsOf(back)
		back.Release()
		want := rowsOf(rec)
		require.Len(t, got, len(want))
		for i := range want {
			// got: columns, w, parser weight (+1); want: columns, weight.
			cols := strings.Split(got[i], "|")
			wcols := strings.Split(want[i], "|")
			// The CSV parser reads an empty field of a string column as
			// "", not NULL, and of any other column as NULL, quoted or
			// not: a NULL VARCHAR comes back as "".
			// And an empty VARBINARY comes back as NULL.
			if wcols[8] == "NULL" {
				wcols[8] = ""
			}
			if wcols[12] == "" {
				wcols[12] = "NULL"
			}
			require.Equal(t, wcols, cols[:len(cols)-1], string(out))
		}
	}
}

func TestEncodeShapes(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int32},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	}, nil)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	rec := changes(t, alloc, schema, `{"insert": {"id": 1, "name": "a", "price": 10, "ts": "2024-01-02 03:04:05.5"}}
{"delete": {"id": 2, "name": null, "price": "-0.5", "ts": null}}
`)
	defer rec.Release()

	tests := []struct {
		name   string
		format pipeline.Format
		want   []string // Encode's result for each row
		batch  string   // EncodeBatch's
	}{
		{
			name:   "insert_delete",
			format: pipeline.Format{Name: "json"},
			want: []string{
				`{"insert":{"id":1,"name":"a","price":10.00,"ts":"2024-01-02 03:04:05.5"}}`,
				`{"delete":{"id":2,"name":null,"price":-0.50,"ts":null}}`,
			},
			batch: "{\"insert\":{\"id\":1,\"name\":\"a\",\"price\":10.00,\"ts\":\"2024-01-02 03:04:05.5\"}}\n{\"delete\":{\"id\":2,\"name\":null,\"price\":-0.50,\"ts\":null}}\n",
		},
		{
			name:   "insert_delete array",
			format: pipeline.Format{Name: "json", Config: json.RawMessage(`{"array": true}`)},
			want: []string{
				`[{"insert":{"id":1,"name":"a","price":10.00,"ts":"2024-01-02 03:04:05.5"}}]`,
				`[{"delete":{"id":2,"name":null,"price":-0.50,"ts":null}}]`,
			},
			batch: "[{\"insert\":{\"id\":1,\"name\":\"a\",\"price\":10.00,\"ts\":\"2024-01-02 03:04:05.5\"}},{\"delete\":{\"id\":2,\"name\":null,\"price\":-0.50,\"ts\":null}}]\n",
		},
		{
			name:   "debezium",
			format: pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "debezium"}`)},
			want: []string{
				`{"payload":{"op":"c","after":{"id":1,"name":"a","price":10.00,"ts":"2024-01-02 03:04:05.5"}}}`,
				`{"payload":{"op":"d","before":{"id":2,"name":null,"price":-0.50,"ts":null}}}`,
			},
		},
		{
			name:   "raw",
			format: pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "raw"}`)},
			want: []string{
				`{"id":1,"name":"a","price":10.00,"ts":"2024-01-02 03:04:05.5"}`,
				"error",
			},
			batch: "{\"id\":1,\"name\":\"a\",\"price\":10.00,\"ts\":\"2024-01-02 03:04:05.5\"}\n",
		},
		{
			name:   "csv",
			format: pipeline.Format{Name: "csv"},
			want: []string{
				`1,a,10.00,2024-01-02 03:04:05.5,1`,
				`2,,-0.50,,-1`,
			},
			batch: "1,a,10.00,2024-01-02 03:04:05.5,1\n2,,-0.50,,-1\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := format.NewEncoder(&tt.format, schema)
			require.NoError(t, err)
			for row, want := range tt.want {
				got, err := enc.Encode([]byte("prefix:"), rec, row)
				if want == "error" {
					require.ErrorIs(t, err, format.ErrRawDelete)
					require.Equal(t, "prefix:", string(got))
					continue
				}
				require.NoError(t, err)
				require.Equal(t, "prefix:"+want, string(got))
				if tt.format.Name == "json" {
					require.True(t, json.Valid(got[len("prefix:"):]))
				}
			}
			if tt.batch != "" {
				got, _, _ := enc.EncodeBatch(nil, rec)
				require.Equal(t, tt.batch, string(got))
			}
		})
	}
}

func TestEncodeWeights(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	b := array.NewRecordBuilder(alloc, pipeline.WithWeight(schema))
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{5, 6}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{2, -2}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	enc, err := format.NewEncoder(nil, schema)
	require.NoError(t, err)
	got, err := enc.Encode(nil, rec, 1)
	require.NoError(t, err)
	require.Equal(t, "{\"delete\":{\"x\":6}}\n{\"delete\":{\"x\":6}}", string(got))
	all, _, err := enc.EncodeBatch(nil, rec)
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(string(all), "\n"))

	csv, err := format.NewEncoder(&pipeline.Format{Name: "csv"}, schema)
	require.NoError(t, err)
	got, err = csv.Encode(nil, rec, 1)
	require.NoError(t, err)
	require.Equal(t, "6,-2", string(got))
}

func TestNewEncoderErrors(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	tests := []struct {
		name   string
		format pipeline.Format
		want   string
	}{
		{name: "unknown update_format", format: pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "nope"}`)}, want: "update_format"},
		{name: "unknown field", format: pipeline.Format{Name: "json", Config: json.RawMessage(`{"bogus": 1}`)}, want: "bogus"},
		{name: "csv delimiter", format: pipeline.Format{Name: "csv", Config: json.RawMessage(`{"delimiter": "ab"}`)}, want: "delimiter"},
		{name: "parquet", format: pipeline.Format{Name: "parquet"}, want: "parquet"},
		{name: "unknown format", format: pipeline.Format{Name: "xml"}, want: "xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := format.NewEncoder(&tt.format, schema)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
