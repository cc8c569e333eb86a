package format_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/file"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

var people = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

func jsonFormat(cfg string) *pipeline.Format {
	return &pipeline.Format{Name: "json", Config: json.RawMessage(cfg)}
}

func csvFormat(cfg string) *pipeline.Format {
	return &pipeline.Format{Name: "csv", Config: json.RawMessage(cfg)}
}

// Invalid UTF-8 never reaches a string column: the record is a parse
// error and the records around it are kept; replace_invalid_utf8 reads
// the bad bytes as U+FFFD instead.
func TestInvalidUTF8(t *testing.T) {
	tests := []struct {
		name   string
		format *pipeline.Format
		in     string
		want   string // the message of the one parse error, or "" for none
		names  []any
	}{
		{
			name:   "json raw, fast path",
			format: nil,
			in:     "{\"id\": 1, \"name\": \"ann\"}\n{\"id\": 2, \"name\": \"b\xffb\"}\n{\"id\": 3, \"name\": \"cy\"}\n",
			want:   "invalid UTF-8 at byte 20 of the record",
			names:  []any{"ann", "cy"},
		},
		{
			name:   "json raw, general path (escapes in the string)",
			format: jsonFormat(`{"update_format": "raw"}`),
			in:     "{\"id\": 1, \"name\": \"a\\tnn\"}\n{\"id\": 2, \"name\": \"b\\tb\xc3\"}\n{\"id\": 3, \"name\": \"cy\"}\n",
			want:   "invalid UTF-8",
			names:  []any{"a\tnn", "cy"},
		},
		{
			name:   "json insert_delete",
			format: jsonFormat(`{"update_format": "insert_delete"}`),
			in:     "{\"insert\": {\"id\": 1, \"name\": \"ann\"}}\n{\"insert\": {\"id\": 2, \"name\": \"\xed\xa0\x80\"}}\n{\"delete\": {\"id\": 3, \"name\": \"cy\"}}\n",
			want:   "invalid UTF-8",
			names:  []any{"ann", "cy"},
		},
		{
			name:   "json debezium",
			format: jsonFormat(`{"update_format": "debezium"}`),
			in:     "{\"op\": \"c\", \"after\": {\"id\": 1, \"name\": \"ann\"}}\n{\"op\": \"c\", \"after\": {\"id\": 2, \"name\": \"\xc0\xaf\"}}\n{\"op\": \"c\", \"after\": {\"id\": 3, \"name\": \"cy\"}}\n",
			want:   "invalid UTF-8",
			names:  []any{"ann", "cy"},
		},
		{
			name:   "json array",
			format: jsonFormat(`{"array": true}`),
			in:     "[{\"id\": 1, \"name\": \"ann\"},\n{\"id\": 2, \"name\": \"b\xffb\"},\n{\"id\": 3, \"name\": \"cy\"}]",
			want:   "invalid UTF-8",
			names:  []any{"ann", "cy"},
		},
		{
			name:   "csv",
			format: csvFormat(`{}`),
			in:     "1,ann\n2,b\xffb\n3,\"c\xfe\"\n4,cy\n",
			want:   "column name: invalid UTF-8 at byte 1 of the field",
			names:  []any{"ann", "cy"},
		},
		{
			name:   "json replace_invalid_utf8",
			format: jsonFormat(`{"replace_invalid_utf8": true}`),
			in:     "{\"id\": 1, \"name\": \"ann\"}\n{\"id\": 2, \"name\": \"b\xffb\"}\n",
			names:  []any{"ann", "b\uFFFDb"},
		},
		{
			name:   "csv replace_invalid_utf8",
			format: csvFormat(`{"replace_invalid_utf8": true}`),
			in:     "1,ann\n2,b\xff\xfeb\n",
			names:  []any{"ann", "b\uFFFDb"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, errs, off := readAll(t, tt.format, people, []byte(tt.in), 100)
			var names []any
			for _, r := range rows {
				names = append(names, r["name"])
			}
			require.Equal(t, tt.names, names)
			require.Equal(t, int64(len(tt.in)), off)
			if tt.want == "" {
				require.Empty(t, errs)
				return
			}
			if strings.Contains(tt.name, "csv") {
				require.Len(t, errs, 2) // "b\xffb" and "c\xfe"
			} else {
				require.Len(t, errs, 1)
			}
			require.Contains(t, errs[0].Message, tt.want)
			for _, e := range errs {
				require.True(t, strings.ToValidUTF8(e.Record, "") == e.Record, "the error's record text is valid UTF-8")
			}
		})
	}
}

// A VARBINARY column takes a CSV field's bytes as they are.
func TestCSVBinaryBytes(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "b", Type: arrow.BinaryTypes.Binary, Nullable: true}}, nil)
	rows, errs, _ := readAll(t, csvFormat(`{}`), schema, []byte("a\xffb\n"), 10)
	require.Empty(t, errs)
	require.Len(t, rows, 1)
}

// lineReader produces head, then a line of size bytes (a JSON object
// whose "name" is size-ish bytes of x, without a newline until its end),
// then tail, without ever holding the long line.
type lineReader struct {
	parts [][]byte
	fill  int64 // bytes of x still to produce, after parts[0]
	sent  bool  // parts[0] sent
}

func newLineReader(head, prefix string, fill int64, suffix, tail string) *lineReader {
	return &lineReader{parts: [][]byte{[]byte(head + prefix), []byte(suffix + tail)}, fill: fill}
}

func (r *lineReader) Read(p []byte) (int, error) {
	switch {
	case len(r.parts[0]) > 0:
		n := copy(p, r.parts[0])
		r.parts[0] = r.parts[0][n:]
		return n, nil
	case r.fill > 0:
		n := int(min(int64(len(p)), r.fill))
		for i := range p[:n] {
			p[i] = 'x'
		}
		r.fill -= int64(n)
		return n, nil
	case len(r.parts[1]) > 0:
		n := copy(p, r.parts[1])
		r.parts[1] = r.parts[1][n:]
		return n, nil
	}
	return 0, io.EOF
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// streamAll reads a stream to its end, returning the rows, the errors and
// the last offset.
func streamAll(t *testing.T, s *format.Stream, batch int) (int64, []connectors.ParseError, int64) {
	var n, off int64
	var errs []connectors.ParseError
	for {
		c, err := s.Next(true)
		if err == io.EOF {
			return n, errs, off
		}
		require.NoError(t, err)
		require.LessOrEqual(t, c.Record.NumRows(), int64(batch))
		n += c.Record.NumRows()
		c.Record.Release()
		errs = append(errs, c.Errors...)
		require.Greater(t, c.Offset, off)
		off = c.Offset
	}
}

// A 300 MB line is one parse error, read in bounded memory: the records
// after it are kept and the offset counts its bytes.
func TestLongLine(t *testing.T) {
	const size = 300 << 20
	head := `{"id": 1, "name": "a"}` + "\n"
	tail := `{"id": 3, "name": "c"}` + "\n" + `{"id": 4, "name": "d"}`
	tests := []struct {
		name   string
		format *pipeline.Format
		limit  int
	}{
		{name: "newline JSON, default max_record_bytes", format: nil, limit: format.DefaultMaxRecordBytes},
		{name: "newline JSON, max_record_bytes 1 MiB", format: jsonFormat(`{"max_record_bytes": 1048576}`), limit: 1 << 20},
		{name: "JSON array, max_record_bytes 1 MiB", format: jsonFormat(`{"array": true, "max_record_bytes": 1048576}`), limit: 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			p, err := format.NewParser(tt.format, people)
			require.NoError(t, err)
			rows := format.NewRows(alloc, people)
			defer rows.Release()
			h, sep, tl, at := head, "\n", tail, len(head)
			if tt.format != nil && strings.Contains(string(tt.format.Config), "array") {
				h, sep, tl = "[\n"+strings.TrimSuffix(head, "\n")+",\n", ",\n", strings.ReplaceAll(tail, "\n", ",\n")+"]"
				at = len(h) - 2 // an element starts with the ",\n" before it
			}
			r := newLineReader(h, `{"id": 2, "name": "`, size, `"}`+sep, tl)
			total := int64(len(h)+len(`{"id": 2, "name": "`)+len(`"}`+sep)+len(tl)) + size
			var n, off int64
			var errs []connectors.ParseError
			used := allocated(func() {
				n, errs, off = streamAll(t, format.NewStream(r, 0, p, rows, 100), 100)
			})
			require.Equal(t, int64(3), n, "the records around the long one")
			require.Len(t, errs, 1)
			require.Equal(t, fmt.Sprintf("byte %d", at), errs[0].Position)
			require.Contains(t, errs[0].Message, fmt.Sprintf("longer than max_record_bytes (%d)", tt.limit))
			require.Contains(t, errs[0].Record, `{"id": 2, "name": "xxx`)
			require.Equal(t, total, off)
			t.Logf("allocated %d MiB reading %d MiB", used>>20, total>>20)
			require.Less(t, used, uint64(64<<20), "memory stays bounded by max_record_bytes, not the line")
		})
	}
}

// A long last record without a newline ends at the end of input.
func TestLongLastRecord(t *testing.T) {
	for _, f := range []*pipeline.Format{jsonFormat(`{"max_record_bytes": 1024}`), csvFormat(`{"max_record_bytes": 1024}`)} {
		t.Run(f.Name, func(t *testing.T) {
			in := "1,a\n" + strings.Repeat("x", 3<<20)
			if f.Name == "json" {
				in = `{"id": 1, "name": "a"}` + "\n" + strings.Repeat("x", 3<<20)
			}
			rows, errs, off := readAll(t, f, people, []byte(in), 10)
			require.Len(t, rows, 1)
			require.Len(t, errs, 1)
			require.Contains(t, errs[0].Message, "record of 3145728 bytes is longer than max_record_bytes (1024)")
			require.Equal(t, int64(len(in)), off)
		})
	}
}

// appendReader is a followed file: Read returns io.EOF at the current end,
// and more bytes may be appended later.
type appendReader struct{ buf bytes.Buffer }

func (r *appendReader) Read(p []byte) (int, error) {
	if r.buf.Len() == 0 {
		return 0, io.EOF
	}
	return r.buf.Read(p)
}

// follow calls Next(false) until ErrNoData, returning the rows, errors and
// last offset of the chunks it got.
func follow(t *testing.T, s *format.Stream) (int64, []connectors.ParseError, int64) {
	var n, off int64
	var errs []connectors.ParseError
	for {
		c, err := s.Next(false)
		if errors.Is(err, format.ErrNoData) {
			return n, errs, off
		}
		require.NoError(t, err)
		n += c.Record.NumRows()
		c.Record.Release()
		errs = append(errs, c.Errors...)
		off = c.Offset
	}
}

// A line still growing in a followed file is discarded as it grows once
// it passes max_record_bytes, then reported when its newline comes.
func TestLongLineFollow(t *testing.T) {
	p, err := format.NewParser(jsonFormat(`{"max_record_bytes": 65536}`), people)
	require.NoError(t, err)
	rows := format.NewRows(memory.DefaultAllocator, people)
	defer rows.Release()
	r := &appendReader{}
	s := format.NewStream(r, 100, p, rows, 10)
	r.buf.WriteString(`{"id": 1, "name": "a"}` + "\n" + `{"id": 2, "name": "`)
	n, errs, off := follow(t, s)
	require.Equal(t, int64(1), n)
	require.Empty(t, errs)
	require.Equal(t, int64(123), off)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	used := allocated(func() {
		for range 50 { // 50 MiB, without a newline yet
			r.buf.Write(chunk)
			n, errs, _ = follow(t, s)
			require.Zero(t, n)
			require.Empty(t, errs)
		}
	})
	require.Less(t, used, uint64(8<<20), "the growing line is not buffered")
	r.buf.WriteString(`"}` + "\n" + `{"id": 3, "name": "c"}` + "\n")
	n, errs, off = follow(t, s)
	require.Equal(t, int64(1), n)
	require.Len(t, errs, 1)
	require.Equal(t, "byte 123", errs[0].Position)
	require.Contains(t, errs[0].Message, fmt.Sprintf("record of %d bytes is longer than max_record_bytes (65536)", 19+50<<20+3))
	require.Equal(t, int64(100+23+19+50<<20+3+23), off)
}

// A stray quote in CSV costs its own line: in a one-shot read, and in
// follow mode once max_record_bytes have passed; batches keep to their
// size.
func TestCSVBareQuote(t *testing.T) {
	var good strings.Builder
	for i := range 50 {
		fmt.Fprintf(&good, "%d,name %d\n", 10+i, i)
	}
	for _, bad := range []string{"5,bad\"quote\n", "5,\"bad\n", "5,\"bad\"quote\n"} {
		t.Run("one-shot "+strings.TrimSpace(bad), func(t *testing.T) {
			in := "1,a\n" + bad + good.String()
			rows, errs, off := readAll(t, csvFormat(`{}`), people, []byte(in), 4)
			require.Len(t, rows, 51)
			require.Len(t, errs, 1)
			require.Equal(t, "byte 4", errs[0].Position)
			require.Contains(t, errs[0].Message, "invalid CSV")
			require.Equal(t, int64(len(in)), off)
		})
	}
	t.Run("follow, an opening quote never closed", func(t *testing.T) {
		p, err := format.NewParser(csvFormat(`{"max_record_bytes": 1024}`), people)
		require.NoError(t, err)
		rows := format.NewRows(memory.DefaultAllocator, people)
		defer rows.Release()
		r := &appendReader{}
		s := format.NewStream(r, 0, p, rows, 1000)
		r.buf.WriteString("1,a\n5,\"bad\n")
		n, errs, _ := follow(t, s)
		require.Equal(t, int64(1), n)
		require.Empty(t, errs)
		lines := 0
		for ; lines*13 < 1100; lines++ { // past max_record_bytes
			fmt.Fprintf(&r.buf, "%d,name %03d\n", 100+lines, lines)
		}
		n, errs, off := follow(t, s)
		require.Len(t, errs, 1, "the stray quote's line")
		require.Equal(t, "byte 4", errs[0].Position)
		require.Equal(t, int64(lines), n, "every line after it")
		require.Equal(t, int64(4+7+13*lines), off)
	})
}

// A DECIMAL's exponent is bounded, so 1e1000000 is rejected at once, in
// JSON (number or string) and CSV; ordinary exponents still work.
func TestDecimalExponent(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "d", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	}, nil)
	json := `{"id": 1, "d": 1e1000000}
{"id": 2, "d": "1E+1000000"}
{"id": 3, "d": 1.5e2}
{"id": 4, "d": 0e1000000}
{"id": 5, "d": -1e-1000000}
{"id": 6, "d": "25e-1"}
`
	rows, errs, _ := readAll(t, nil, schema, []byte(json), 100)
	require.Equal(t, []map[string]any{
		{"id": 3.0, "d": "150", "_weight": 1.0},
		{"id": 6.0, "d": "2.5", "_weight": 1.0},
	}, rows)
	require.Len(t, errs, 4)
	require.Contains(t, errs[0].Message, `column d: "1e1000000" does not fit decimal(10, 2): exponent +1000000 is out of range (at most ±1000)`)
	require.Contains(t, errs[3].Message, "exponent -1000000 is out of range")

	rows, errs, _ = readAll(t, csvFormat(`{}`), schema, []byte("1,1e1000000\n2,12.5e1\n3,1/3\n4,0x10\n"), 100)
	require.Len(t, rows, 1)
	require.Equal(t, "125", rows[0]["d"])
	require.Len(t, errs, 3)
	require.Contains(t, errs[0].Message, "exponent +1000000 is out of range")
	require.Contains(t, errs[1].Message, `want a decimal decimal(10, 2), got "1/3"`)
	require.Contains(t, errs[2].Message, `want a decimal`)

	_, err := format.ParseText(schema.Field(1).Type, strings.Repeat("1", 2000))
	require.ErrorContains(t, err, "more than 1000")
}

// With csv headers: true every Kafka message is a CSV document of its
// own: its first line is skipped, and a message with a header alone is a
// parse error, not a record silently dropped.
func TestCSVHeadersMessage(t *testing.T) {
	p, err := format.NewParser(csvFormat(`{"headers": true}`), people)
	require.NoError(t, err)
	rows := format.NewRows(memory.DefaultAllocator, people)
	defer rows.Release()
	tests := []struct {
		name string
		msg  string
		rows int64
		errs []string
	}{
		{name: "a header and records", msg: "id,name\n1,a\n2,b\n", rows: 2},
		{name: "a header and a record without a newline", msg: "id,name\n1,a", rows: 1},
		{name: "a header, an empty line and a record", msg: "id,name\n\n1,a\n", rows: 1},
		{name: "one record: taken as the header", msg: "1,a\n", errs: []string{"holds a header line and no record"}},
		{name: "a malformed header", msg: "id,na\"me\n1,a\n", rows: 1},
		{name: "an empty message", msg: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := format.ParseMessage(p, []byte(tt.msg), rows)
			rec := rows.NewRecordBatch()
			defer rec.Release()
			require.Equal(t, tt.rows, rec.NumRows())
			require.Len(t, errs, len(tt.errs))
			for i, e := range tt.errs {
				require.Contains(t, errs[i].Message, e)
			}
		})
	}

	// A file's header is its first line, malformed or not: the record
	// after it is never taken for the header.
	in := "id,na\"me\n1,a\n2,b\n"
	got, errs, _ := readAll(t, csvFormat(`{"headers": true}`), people, []byte(in), 100)
	require.Empty(t, errs)
	require.Len(t, got, 2)
	// A file that is a header alone is an empty table, not an error.
	got, errs, _ = readAll(t, csvFormat(`{"headers": true}`), people, []byte("id,name\n"), 100)
	require.Empty(t, errs)
	require.Empty(t, got)
}

func TestRecordOptionsConfig(t *testing.T) {
	for _, cfg := range []string{`{"max_record_bytes": -1}`, `{"max_record_bytes": 2147483648}`} {
		_, err := format.NewParser(jsonFormat(cfg), people)
		require.ErrorContains(t, err, "format.config.max_record_bytes")
		_, err = format.NewParser(csvFormat(cfg), people)
		require.ErrorContains(t, err, "format.config.max_record_bytes")
	}
}

// TestPeakRSS measures the peak resident memory of file_input reading a
// file with a 200 MB line. It runs only when SLUICE_PEAK_RSS is set, alone
// in its process:
//
//	SLUICE_PEAK_RSS=1 go test -count=1 -run TestPeakRSS -v ./connectors/format/
func TestPeakRSS(t *testing.T) {
	if os.Getenv("SLUICE_PEAK_RSS") == "" {
		t.Skip("set SLUICE_PEAK_RSS=1 to measure")
	}
	path := filepath.Join(t.TempDir(), "long.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = io.Copy(f, newLineReader(`{"id": 1, "name": "a"}`+"\n", `{"id": 2, "name": "`, 200<<20, `"}`+"\n", `{"id": 3, "name": "c"}`+"\n"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	before := vmHWM(t)
	src, err := file.New(connectors.Params{Endpoint: "t.in", Config: json.RawMessage(fmt.Sprintf(`{"path": %q}`, path)), Schema: people, BatchSize: 10_000})
	require.NoError(t, err)
	require.NoError(t, src.Open(t.Context(), nil))
	defer src.Close()
	var n, errs int64
	for {
		b, err := src.Read(t.Context())
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		require.NoError(t, err)
		n += b.Rows()
		errs += int64(len(b.Errors))
		if b.Record != nil {
			b.Record.Release()
		}
	}
	t.Logf("rows %d, parse errors %d; VmHWM before reading %s, after %s", n, errs, before, vmHWM(t))
}

func vmHWM(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// BenchmarkCSV parses 200,000 CSV records of the flights schema.
func BenchmarkCSV(b *testing.B) {
	var in bytes.Buffer
	for i := range 200_000 {
		fmt.Fprintf(&in, "%d,%d,%d.5\n", i%300-20, 100+i%3000, i%90)
	}
	p, err := format.NewParser(csvFormat(`{}`), flights)
	require.NoError(b, err)
	rows := format.NewRows(memory.DefaultAllocator, flights)
	defer rows.Release()
	b.SetBytes(int64(in.Len()))
	for b.Loop() {
		require.Empty(b, p.Parse(in.Bytes(), 1, rows))
		rows.NewRecordBatch().Release()
	}
}
