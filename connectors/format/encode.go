package format

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// ErrRawDelete is the encode error of a delete in json's raw update
// format, which can only say "insert this row": the change is not
// encoded. Use raw for insert-only tables.
var ErrRawDelete = errors.New("json update_format raw cannot encode a delete (use insert_delete or debezium)")

// Encoder encodes a table's changes in an output format. Its input is a
// change record batch: the table's columns, then the int64 weight column
// (pipeline.WithWeight), +1 an insert, -1 a delete; a weight of ±n is n
// identical changes. The encoder neither retains nor releases batches.
// Not safe for concurrent use.
type Encoder interface {
	// Encode appends the change in row of rec to dst as one
	// self-contained record with no separator after it: the value of one
	// Kafka message. A weight of ±n (n > 1) gives n records separated by
	// newlines (inside one array with json array: true). An error leaves
	// dst as it was; it is an encode error of that change alone
	// (ErrRawDelete), the next rows still encode.
	Encode(dst []byte, rec arrow.RecordBatch, row int) ([]byte, error)
	// EncodeBatch appends every change of rec to dst as a stream: each
	// record followed by a newline (json array: true: the batch as one
	// array followed by a newline). Rows that fail to encode are skipped
	// and counted in failed, and err is the first of their errors.
	EncodeBatch(dst []byte, rec arrow.RecordBatch) (out []byte, failed int, err error)
}

// JSONEncoderConfig is Feldera's JSON encoder config (feldera-types
// format/json.rs JsonEncoderConfig).
type JSONEncoderConfig struct {
	// UpdateFormat is "insert_delete" (the default for outputs:
	// {"insert": {...}} or {"delete": {...}}), "raw" (the row alone; only
	// inserts, a delete is [ErrRawDelete]) or "debezium"
	// ({"payload": {"op": "c", "after": {...}}} and
	// {"payload": {"op": "d", "before": {...}}}).
	UpdateFormat string `json:"update_format,omitempty"`
	// JSONFlavor is accepted for compatibility with Feldera; only the
	// default flavor is written.
	JSONFlavor string `json:"json_flavor,omitempty"`
	// BufferSizeRecords is accepted for compatibility with Feldera (it
	// sizes Feldera's output buffers); Sluice's sinks batch by commit.
	BufferSizeRecords int `json:"buffer_size_records,omitempty"`
	// Array wraps records in JSON arrays: one array per message
	// ([Encoder.Encode]) or per batch ([Encoder.EncodeBatch]).
	Array bool `json:"array,omitempty"`
}

// CSVEncoderConfig is the CSV output config: as Feldera's CSV encoder,
// each change is a line of the row's fields and then its weight as the
// last field: "1,a,1" inserts, "1,a,-1" deletes. Values are written as
// the CSV parser reads them (see [Encoder] and json's value shapes);
// VARBINARY fields are the bytes as they are.
type CSVEncoderConfig struct {
	// Delimiter separates fields; one character, default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// Headers is accepted for symmetry with the input config; no header
	// line is written.
	Headers bool `json:"headers,omitempty"`
}

// NewEncoder returns the encoder of an output format for a table of the
// given schema (without the weight column): json (the default when f is
// nil) or csv. Parquet is written whole files at a time by the sinks that
// support it (file_output), not record by record. Config errors are
// connectors.FieldErrors of section "format".
func NewEncoder(f *pipeline.Format, schema *arrow.Schema) (Encoder, error) {
	if f == nil {
		return newJSONEncoder(nil, schema)
	}
	switch f.Name {
	case "json":
		return newJSONEncoder(f, schema)
	case "csv":
		return newCSVEncoder(f, schema)
	case "parquet":
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("parquet is written as whole files (file_output), not record by record")}
	case "avro", "raw":
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("output format %q is not supported yet", f.Name)}
	}
	return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("unknown format %q (known: json, csv, parquet)", f.Name)}
}

// valueFunc appends the value of a non-null row of a column.
type valueFunc func(dst []byte, col arrow.Array, row int) []byte

type jsonEncoder struct {
	cfg   JSONEncoderConfig
	keys  [][]byte // `"name":` per column, with the comma before it for all but the first
	vals  []valueFunc
	ncols int
}

func newJSONEncoder(f *pipeline.Format, schema *arrow.Schema) (*jsonEncoder, error) {
	var cfg JSONEncoderConfig
	if f != nil {
		if err := connectors.DecodeConfig("format", f.Config, &cfg); err != nil {
			return nil, err
		}
	}
	switch cfg.UpdateFormat {
	case "":
		cfg.UpdateFormat = "insert_delete"
	case "insert_delete", "raw", "debezium":
	case "snowflake", "weighted", "redis":
		return nil, connectors.FormatError("update_format", "%q is not supported yet for outputs", cfg.UpdateFormat)
	default:
		return nil, connectors.FormatError("update_format", "unknown %q: want insert_delete, raw or debezium", cfg.UpdateFormat)
	}
	if cfg.BufferSizeRecords < 0 {
		return nil, connectors.FormatError("buffer_size_records", "want a positive number, got %d", cfg.BufferSizeRecords)
	}
	e := &jsonEncoder{cfg: cfg, ncols: schema.NumFields()}
	for i, fld := range schema.Fields() {
		fn, err := jsonValue(fld.Type)
		if err != nil {
			return nil, connectors.FormatError("name", "column %s: %v", fld.Name, err)
		}
		var k []byte
		if i > 0 {
			k = append(k, ',')
		}
		k = appendJSONString(k, fld.Name)
		k = append(k, ':')
		e.keys = append(e.keys, k)
		e.vals = append(e.vals, fn)
	}
	return e, nil
}

// weight returns the weight of row, from the last column of rec.
func weight(rec arrow.RecordBatch, row int) (int64, error) {
	n := int(rec.NumCols())
	if n == 0 {
		return 0, fmt.Errorf("record batch without a %s column", pipeline.WeightColumn)
	}
	w, ok := rec.Column(n - 1).(*array.Int64)
	if !ok {
		return 0, fmt.Errorf("last column is %s, want the int64 %s column", rec.Column(n-1).DataType(), pipeline.WeightColumn)
	}
	return w.Value(row), nil
}

func (e *jsonEncoder) checkShape(rec arrow.RecordBatch) error {
	if int(rec.NumCols()) != e.ncols+1 {
		return fmt.Errorf("record batch has %d columns, want the table's %d and %s", rec.NumCols(), e.ncols, pipeline.WeightColumn)
	}
	return nil
}

// appendRow appends {"col": value, ...}.
func (e *jsonEncoder) appendRow(dst []byte, rec arrow.RecordBatch, row int) []byte {
	dst = append(dst, '{')
	for i := range e.ncols {
		dst = append(dst, e.keys[i]...)
		col := rec.Column(i)
		if col.IsNull(row) {
			dst = append(dst, "null"...)
			continue
		}
		dst = e.vals[i](dst, col, row)
	}
	return append(dst, '}')
}

// appendChange appends one change record of row, without separators.
func (e *jsonEncoder) appendChange(dst []byte, rec arrow.RecordBatch, row int, insert bool) []byte {
	switch e.cfg.UpdateFormat {
	case "raw":
		return e.appendRow(dst, rec, row)
	case "debezium":
		if insert {
			dst = append(dst, `{"payload":{"op":"c","after":`...)
		} else {
			dst = append(dst, `{"payload":{"op":"d","before":`...)
		}
		dst = e.appendRow(dst, rec, row)
		return append(dst, "}}"...)
	}
	if insert {
		dst = append(dst, `{"insert":`...)
	} else {
		dst = append(dst, `{"delete":`...)
	}
	dst = e.appendRow(dst, rec, row)
	return append(dst, '}')
}

// changes returns how many records row makes and whether they insert.
func (e *jsonEncoder) changes(rec arrow.RecordBatch, row int) (int64, bool, error) {
	w, err := weight(rec, row)
	if err != nil {
		return 0, false, err
	}
	if w < 0 && e.cfg.UpdateFormat == "raw" {
		return 0, false, ErrRawDelete
	}
	if w < 0 {
		return -w, false, nil
	}
	return w, true, nil
}

func (e *jsonEncoder) Encode(dst []byte, rec arrow.RecordBatch, row int) ([]byte, error) {
	if err := e.checkShape(rec); err != nil {
		return dst, err
	}
	n, insert, err := e.changes(rec, row)
	if err != nil {
		return dst, err
	}
	if e.cfg.Array {
		dst = append(dst, '[')
	}
	for k := range n {
		if k > 0 {
			if e.cfg.Array {
				dst = append(dst, ',')
			} else {
				dst = append(dst, '\n')
			}
		}
		dst = e.appendChange(dst, rec, row, insert)
	}
	if e.cfg.Array {
		dst = append(dst, ']')
	}
	return dst, nil
}

func (e *jsonEncoder) EncodeBatch(dst []byte, rec arrow.RecordBatch) ([]byte, int, error) {
	if err := e.checkShape(rec); err != nil {
		return dst, 0, err
	}
	var (
		failed   int
		firstErr error
		first    = true
	)
	if e.cfg.Array {
		dst = append(dst, '[')
	}
	for row := range int(rec.NumRows()) {
		n, insert, err := e.changes(rec, row)
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for range n {
			if e.cfg.Array && !first {
				dst = append(dst, ',')
			}
			first = false
			dst = e.appendChange(dst, rec, row, insert)
			if !e.cfg.Array {
				dst = append(dst, '\n')
			}
		}
	}
	if e.cfg.Array {
		dst = append(dst, "]\n"...)
	}
	return dst, failed, firstErr
}

// jsonValue returns the appender of a column type's JSON values, as the
// JSON parser (Rows.AppendJSON) reads them back: numbers for integers,
// floats and decimals, base64 strings for binary, "YYYY-MM-DD" dates,
// "HH:MM:SS[.ffffff]" times and "YYYY-MM-DD HH:MM:SS[.ffffff]" timestamps.
func jsonValue(dt arrow.DataType) (valueFunc, error) {
	switch dt.ID() {
	case arrow.BOOL:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendBool(dst, col.(*array.Boolean).Value(row))
		}, nil
	case arrow.FLOAT32, arrow.FLOAT64:
		txt, _ := textValue(dt)
		return func(dst []byte, col arrow.Array, row int) []byte {
			start := len(dst)
			dst = txt(dst, col, row)
			switch string(dst[start:]) {
			case "NaN", "+Inf", "-Inf": // not JSON numbers: a string, as Feldera writes them
				s := string(dst[start:])
				return appendJSONString(dst[:start], s)
			}
			return dst
		}, nil
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.DECIMAL128:
		return textValue(dt)
	case arrow.STRING:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return appendJSONString(dst, col.(*array.String).Value(row))
		}, nil
	case arrow.BINARY:
		return func(dst []byte, col arrow.Array, row int) []byte {
			b := col.(*array.Binary).Value(row)
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			return append(dst, '"')
		}, nil
	case arrow.DATE32, arrow.TIME64, arrow.TIMESTAMP:
		txt, err := textValue(dt)
		if err != nil {
			return nil, err
		}
		return func(dst []byte, col arrow.Array, row int) []byte {
			dst = append(dst, '"')
			dst = txt(dst, col, row)
			return append(dst, '"')
		}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", dt)
}

// textValue returns the appender of a column type's values as text, as
// fromString reads them back: the CSV field, and the JSON value of
// numbers and the inside of JSON strings of dates and times.
func textValue(dt arrow.DataType) (valueFunc, error) {
	switch dt.ID() {
	case arrow.BOOL:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendBool(dst, col.(*array.Boolean).Value(row))
		}, nil
	case arrow.INT8:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendInt(dst, int64(col.(*array.Int8).Value(row)), 10)
		}, nil
	case arrow.INT16:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendInt(dst, int64(col.(*array.Int16).Value(row)), 10)
		}, nil
	case arrow.INT32:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendInt(dst, int64(col.(*array.Int32).Value(row)), 10)
		}, nil
	case arrow.INT64:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return strconv.AppendInt(dst, col.(*array.Int64).Value(row), 10)
		}, nil
	case arrow.FLOAT32:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return appendFloat(dst, float64(col.(*array.Float32).Value(row)), 32)
		}, nil
	case arrow.FLOAT64:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return appendFloat(dst, col.(*array.Float64).Value(row), 64)
		}, nil
	case arrow.DECIMAL128:
		scale := dt.(*arrow.Decimal128Type).Scale
		return func(dst []byte, col arrow.Array, row int) []byte {
			return appendDecimal(dst, col.(*array.Decimal128).Value(row).BigInt().String(), int(scale))
		}, nil
	case arrow.STRING:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return append(dst, col.(*array.String).Value(row)...)
		}, nil
	case arrow.BINARY:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return append(dst, col.(*array.Binary).Value(row)...)
		}, nil
	case arrow.DATE32:
		return func(dst []byte, col arrow.Array, row int) []byte {
			return col.(*array.Date32).Value(row).ToTime().AppendFormat(dst, "2006-01-02")
		}, nil
	case arrow.TIME64:
		if dt.(*arrow.Time64Type).Unit != arrow.Microsecond {
			return nil, fmt.Errorf("unsupported type %s (want time64[us])", dt)
		}
		return func(dst []byte, col arrow.Array, row int) []byte {
			us := int64(col.(*array.Time64).Value(row))
			t := time.UnixMicro(us).UTC()
			return t.AppendFormat(dst, "15:04:05.999999")
		}, nil
	case arrow.TIMESTAMP:
		if dt.(*arrow.TimestampType).Unit != arrow.Microsecond {
			return nil, fmt.Errorf("unsupported type %s (want timestamp[us])", dt)
		}
		return func(dst []byte, col arrow.Array, row int) []byte {
			t := time.UnixMicro(int64(col.(*array.Timestamp).Value(row))).UTC()
			return t.AppendFormat(dst, "2006-01-02 15:04:05.999999")
		}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", dt)
}

// appendFloat appends f in the shortest form that reads back the same,
// without an exponent for ordinary magnitudes; NaN, +Inf and -Inf as such.
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-Inf"...)
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(dst, f, 'e', -1, bits)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits)
}

// appendDecimal appends the unscaled integer digits (with an optional
// '-') as a decimal number with scale digits after the point.
func appendDecimal(dst []byte, digits string, scale int) []byte {
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
		dst = append(dst, '-')
	}
	if scale <= 0 {
		return append(dst, digits...)
	}
	for len(digits) <= scale {
		digits = "0" + digits
	}
	dst = append(dst, digits[:len(digits)-scale]...)
	dst = append(dst, '.')
	return append(dst, digits[len(digits)-scale:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced with U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

type csvEncoder struct {
	delim byte
	vals  []valueFunc
	text  []bool // the column's text may need quoting
	ncols int
}

func newCSVEncoder(f *pipeline.Format, schema *arrow.Schema) (*csvEncoder, error) {
	var cfg CSVEncoderConfig
	if err := connectors.DecodeConfig("format", f.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Delimiter == "" {
		cfg.Delimiter = ","
	}
	if len(cfg.Delimiter) != 1 || cfg.Delimiter[0] == '"' || cfg.Delimiter[0] == '\n' || cfg.Delimiter[0] == '\r' {
		return nil, connectors.FormatError("delimiter", "want one ASCII character other than a quote or a newline, got %q", cfg.Delimiter)
	}
	e := &csvEncoder{delim: cfg.Delimiter[0], ncols: schema.NumFields()}
	for _, fld := range schema.Fields() {
		fn, err := textValue(fld.Type)
		if err != nil {
			return nil, connectors.FormatError("name", "column %s: %v", fld.Name, err)
		}
		e.vals = append(e.vals, fn)
		e.text = append(e.text, fld.Type.ID() == arrow.STRING || fld.Type.ID() == arrow.BINARY)
	}
	return e, nil
}

// appendRecord appends the row's fields and its weight, without a newline.
// NULL is an empty field; an empty string or VARBINARY is "" (quoted).
// Sluice's CSV parser reads an empty field of a VARCHAR column as "" and
// of any other column as NULL, so a NULL VARCHAR reads back as "" and an
// empty VARBINARY as NULL; use json for an exact round trip.
func (e *csvEncoder) appendRecord(dst []byte, rec arrow.RecordBatch, row int, w int64) []byte {
	for i := range e.ncols {
		if i > 0 {
			dst = append(dst, e.delim)
		}
		col := rec.Column(i)
		if col.IsNull(row) {
			continue
		}
		start := len(dst)
		dst = e.vals[i](dst, col, row)
		if e.text[i] && e.needsQuotes(dst[start:]) {
			dst = e.quote(dst, start)
		}
	}
	dst = append(dst, e.delim)
	return strconv.AppendInt(dst, w, 10)
}

func (e *csvEncoder) needsQuotes(field []byte) bool {
	if len(field) == 0 {
		return true
	}
	for _, c := range field {
		if c == e.delim || c == '"' || c == '\n' || c == '\r' {
			return true
		}
	}
	return field[0] == ' ' || field[0] == '\t'
}

// quote rewrites dst[start:] as a quoted field.
func (e *csvEncoder) quote(dst []byte, start int) []byte {
	field := append([]byte(nil), dst[start:]...)
	dst = append(dst[:start], '"')
	for _, c := range field {
		if c == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

func (e *csvEncoder) check(rec arrow.RecordBatch, row int) (int64, error) {
	if int(rec.NumCols()) != e.ncols+1 {
		return 0, fmt.Errorf("record batch has %d columns, want the table's %d and %s", rec.NumCols(), e.ncols, pipeline.WeightColumn)
	}
	return weight(rec, row)
}

func (e *csvEncoder) Encode(dst []byte, rec arrow.RecordBatch, row int) ([]byte, error) {
	w, err := e.check(rec, row)
	if err != nil {
		return dst, err
	}
	return e.appendRecord(dst, rec, row, w), nil
}

func (e *csvEncoder) EncodeBatch(dst []byte, rec arrow.RecordBatch) ([]byte, int, error) {
	if rec.NumRows() == 0 {
		return dst, 0, nil
	}
	if _, err := e.check(rec, 0); err != nil {
		return dst, 0, err
	}
	w := rec.Column(e.ncols).(*array.Int64)
	for row := range int(rec.NumRows()) {
		dst = e.appendRecord(dst, rec, row, w.Value(row))
		dst = append(dst, '\n')
	}
	return dst, 0, nil
}
