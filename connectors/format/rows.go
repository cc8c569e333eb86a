package format

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pipeline"
)

// Rows builds a record batch in a table's change schema (columns, then the
// weight) one record at a time. A record that fails to convert is not
// appended at all: every value is converted before any is appended.
// Not safe for concurrent use.
type Rows struct {
	schema  *arrow.Schema // table schema, without the weight
	b       *array.RecordBuilder
	byName  map[string]int
	seen    []bool // stageJSON's columns named so far, reused
	staging []any
}

// NewRows returns a builder for schema's change schema. Call Release when done.
func NewRows(alloc memory.Allocator, schema *arrow.Schema) *Rows {
	byName := make(map[string]int, schema.NumFields())
	for i, f := range schema.Fields() {
		byName[f.Name] = i
		if _, ok := byName[strings.ToLower(f.Name)]; !ok {
			byName[strings.ToLower(f.Name)] = i
		}
	}
	return &Rows{
		schema:  schema,
		b:       array.NewRecordBuilder(alloc, pipeline.WithWeight(schema)),
		byName:  byName,
		staging: make([]any, schema.NumFields()),
	}
}

// Len returns the records appended since the last NewRecordBatch.
func (r *Rows) Len() int { return r.b.Field(0).Len() }

// NewRecordBatch returns the records appended so far and resets the builder.
// The caller releases the batch.
func (r *Rows) NewRecordBatch() arrow.RecordBatch { return r.b.NewRecordBatch() }

// Release frees the builder.
func (r *Rows) Release() { r.b.Release() }

// AppendJSON appends a record from a decoded JSON object (numbers as
// json.Number). Fields are matched to columns by name, exactly or in lower
// case; unknown fields are ignored; a missing field is NULL.
func (r *Rows) AppendJSON(obj map[string]any, weight int64) error {
	if err := r.stageJSON(obj); err != nil {
		return err
	}
	return r.commit(weight)
}

// AppendRawJSON appends a record from one raw JSON value per column (nil
// for a missing field), converted as AppendJSON converts decoded values.
func (r *Rows) AppendRawJSON(values []json.RawMessage, weight int64) error {
	for i, raw := range values {
		v, err := decodeRaw(raw)
		if err == nil {
			v, err = fromJSON(r.schema.Field(i).Type, v)
		}
		if err != nil {
			return fmt.Errorf("column %s: %w", r.schema.Field(i).Name, err)
		}
		r.staging[i] = v
	}
	return r.commit(weight)
}

// decodeRaw decodes one JSON value as json.Decoder with UseNumber does,
// quickly for numbers, plain strings and literals.
func decodeRaw(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	switch c := raw[0]; {
	case c == 'n':
		return nil, nil
	case c == 't':
		return true, nil
	case c == 'f':
		return false, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return json.Number(raw), nil
	case c == '"' && bytes.IndexByte(raw, '\\') < 0:
		return string(raw[1 : len(raw)-1]), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// AppendJSONUpdate appends an update as two records, before with weight -1
// and after with weight +1, or neither if either fails to convert.
func (r *Rows) AppendJSONUpdate(before, after map[string]any) error {
	if err := r.stageJSON(before); err != nil {
		return fmt.Errorf("before: %w", err)
	}
	if err := r.checkNulls(); err != nil {
		return fmt.Errorf("before: %w", err)
	}
	old := append([]any(nil), r.staging...)
	if err := r.stageJSON(after); err != nil {
		return fmt.Errorf("after: %w", err)
	}
	if err := r.checkNulls(); err != nil {
		return fmt.Errorf("after: %w", err)
	}
	next := append([]any(nil), r.staging...)
	_ = r.AppendValues(old, -1)
	return r.AppendValues(next, 1)
}

// stageJSON converts obj's fields into r.staging.
func (r *Rows) stageJSON(obj map[string]any) error {
	for i := range r.staging {
		r.staging[i] = nil
	}
	// Two fields naming one column (names match case-insensitively) would
	// leave the value to map order: an error instead.
	if len(obj) > 1 {
		if r.seen == nil {
			r.seen = make([]bool, len(r.staging))
		}
		clear(r.seen)
		for k := range obj {
			i, ok := r.byName[k]
			if !ok {
				if i, ok = r.byName[strings.ToLower(k)]; !ok {
					continue
				}
			}
			if r.seen[i] {
				return r.sameColumn(obj, i)
			}
			r.seen[i] = true
		}
	}
	for k, v := range obj {
		i, ok := r.byName[k]
		if !ok {
			if i, ok = r.byName[strings.ToLower(k)]; !ok {
				continue
			}
		}
		cv, err := fromJSON(r.schema.Field(i).Type, v)
		if err != nil {
			return fmt.Errorf("column %s: %w", r.schema.Field(i).Name, err)
		}
		r.staging[i] = cv
	}
	return nil
}

// sameColumn is the error for the fields of obj that all name column i.
func (r *Rows) sameColumn(obj map[string]any, i int) error {
	var names []string
	for k := range obj {
		j, ok := r.byName[k]
		if !ok {
			j, ok = r.byName[strings.ToLower(k)]
		}
		if ok && j == i {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return fmt.Errorf("fields %q all name column %s (names match case-insensitively)", names, r.schema.Field(i).Name)
}

// AppendStrings appends a record from text fields in column order (CSV).
// An empty unquoted field is NULL for non-string columns.
func (r *Rows) AppendStrings(fields []string, weight int64) error {
	if len(fields) != len(r.staging) {
		return fmt.Errorf("want %d fields, got %d", len(r.staging), len(fields))
	}
	for i, s := range fields {
		dt := r.schema.Field(i).Type
		if s == "" && dt.ID() != arrow.STRING {
			r.staging[i] = nil
			continue
		}
		v, err := fromString(dt, s)
		if err != nil {
			return fmt.Errorf("column %s: %w", r.schema.Field(i).Name, err)
		}
		r.staging[i] = v
	}
	return r.commit(weight)
}

// AppendValues appends a record of already typed values (as produced by
// fromJSON/fromString: int64, float64, string, bool, []byte,
// decimal128.Num, arrow.Date32, arrow.Time64, arrow.Timestamp or nil).
func (r *Rows) AppendValues(values []any, weight int64) error {
	copy(r.staging, values)
	return r.commit(weight)
}

func (r *Rows) checkNulls() error {
	for i, v := range r.staging {
		if v == nil && !r.schema.Field(i).Nullable {
			return fmt.Errorf("column %s: NULL in a NOT NULL column", r.schema.Field(i).Name)
		}
	}
	return nil
}

func (r *Rows) commit(weight int64) error {
	if err := r.checkNulls(); err != nil {
		return err
	}
	for i, v := range r.staging {
		appendValue(r.b.Field(i), v)
	}
	r.b.Field(len(r.staging)).(*array.Int64Builder).Append(weight)
	return nil
}

func appendValue(b array.Builder, v any) {
	if v == nil {
		b.AppendNull()
		return
	}
	switch b := b.(type) {
	case *array.BooleanBuilder:
		b.Append(v.(bool))
	case *array.Int8Builder:
		b.Append(int8(v.(int64)))
	case *array.Int16Builder:
		b.Append(int16(v.(int64)))
	case *array.Int32Builder:
		b.Append(int32(v.(int64)))
	case *array.Int64Builder:
		b.Append(v.(int64))
	case *array.Float32Builder:
		b.Append(float32(v.(float64)))
	case *array.Float64Builder:
		b.Append(v.(float64))
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.BinaryBuilder:
		b.Append(v.([]byte))
	case *array.Decimal128Builder:
		b.Append(v.(decimal128.Num))
	case *array.Date32Builder:
		b.Append(v.(arrow.Date32))
	case *array.Time64Builder:
		b.Append(v.(arrow.Time64))
	case *array.TimestampBuilder:
		b.Append(v.(arrow.Timestamp))
	default:
		panic(fmt.Sprintf("format: no appender for %T", b))
	}
}

// intRange returns the bounds of an integer type.
func intRange(dt arrow.DataType) (int64, int64) {
	switch dt.ID() {
	case arrow.INT8:
		return math.MinInt8, math.MaxInt8
	case arrow.INT16:
		return math.MinInt16, math.MaxInt16
	case arrow.INT32:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// fromJSON converts a decoded JSON value to the Go value appendValue wants.
func fromJSON(dt arrow.DataType, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch dt.ID() {
	case arrow.BOOL:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64:
		if n, ok := v.(json.Number); ok {
			return fromString(dt, string(n))
		}
	case arrow.FLOAT32, arrow.FLOAT64:
		if n, ok := v.(json.Number); ok {
			return fromString(dt, string(n))
		}
	case arrow.DECIMAL128:
		switch n := v.(type) {
		case json.Number:
			return fromString(dt, string(n))
		case string:
			return fromString(dt, n)
		}
	case arrow.STRING:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case arrow.BINARY:
		if s, ok := v.(string); ok {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("want base64 bytes: %w", err)
			}
			return b, nil
		}
	case arrow.DATE32, arrow.TIME64, arrow.TIMESTAMP:
		switch n := v.(type) {
		case string:
			return fromString(dt, n)
		case json.Number:
			i, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("want an integer %s, got %s", dt, n)
			}
			switch dt.ID() {
			case arrow.DATE32:
				return arrow.Date32(i), nil // days since the epoch
			case arrow.TIME64:
				return arrow.Time64(i), nil // microseconds since midnight
			}
			return arrow.Timestamp(i * 1000), nil // milliseconds since the epoch, as Feldera's JSON
		}
	}
	return nil, fmt.Errorf("want %s, got %s", sqlName(dt), describe(v))
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(truncate(v, 40))
	case json.Number:
		return "number " + string(v)
	case bool:
		return "boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func sqlName(dt arrow.DataType) string {
	switch dt.ID() {
	case arrow.BOOL:
		return "a boolean"
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64:
		return "an integer (" + dt.String() + ")"
	case arrow.FLOAT32, arrow.FLOAT64:
		return "a number"
	case arrow.DECIMAL128:
		return "a decimal " + dt.String()
	case arrow.STRING:
		return "a string"
	case arrow.BINARY:
		return "base64 bytes"
	case arrow.DATE32:
		return "a date (YYYY-MM-DD)"
	case arrow.TIME64:
		return "a time (HH:MM:SS[.ffffff])"
	case arrow.TIMESTAMP:
		return "a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])"
	}
	return dt.String()
}

var timestampLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", time.RFC3339Nano, "2006-01-02"}

// fromString converts text to the Go value appendValue wants.
func fromString(dt arrow.DataType, s string) (any, error) {
	bad := func() (any, error) { return nil, fmt.Errorf("want %s, got %q", sqlName(dt), truncate(s, 40)) }
	switch dt.ID() {
	case arrow.BOOL:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return bad()
		}
		return b, nil
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return bad()
		}
		lo, hi := intRange(dt)
		if i < lo || i > hi {
			return nil, fmt.Errorf("%d is out of range for %s", i, dt)
		}
		return i, nil
	case arrow.FLOAT32, arrow.FLOAT64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return bad()
		}
		return f, nil
	case arrow.DECIMAL128:
		d := dt.(*arrow.Decimal128Type)
		t := strings.TrimSpace(s)
		if err := checkDecimal(t); err != nil {
			if errors.Is(err, errNotDecimal) {
				return bad()
			}
			return nil, fmt.Errorf("%q does not fit %s: %w", truncate(s, 40), dt, err)
		}
		r, ok := new(big.Rat).SetString(t)
		if !ok {
			return bad()
		}
		n, err := decimal128.FromString(r.FloatString(int(d.Scale)), d.Precision, d.Scale)
		if err != nil {
			return nil, fmt.Errorf("%q does not fit %s", truncate(s, 40), dt)
		}
		return n, nil
	case arrow.STRING:
		return s, nil
	case arrow.BINARY:
		return []byte(s), nil
	case arrow.DATE32:
		t, err := time.Parse("2006-01-02", strings.TrimSpace(s))
		if err != nil {
			return bad()
		}
		return arrow.Date32FromTime(t), nil
	case arrow.TIME64:
		t, err := time.Parse("15:04:05.999999999", strings.TrimSpace(s))
		if err != nil {
			return bad()
		}
		return arrow.Time64(int64(t.Hour())*3600e6 + int64(t.Minute())*60e6 + int64(t.Second())*1e6 + int64(t.Nanosecond())/1e3), nil
	case arrow.TIMESTAMP:
		for _, layout := range timestampLayouts {
			if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
				return arrow.Timestamp(t.UnixMicro()), nil
			}
		}
		return bad()
	}
	return nil, fmt.Errorf("unsupported type %s", dt)
}

// Bounds of a DECIMAL's text, so that converting it costs little: the
// exponent of 1e1000000 alone would take seconds of big-number work.
const (
	maxDecimalText     = 1000 // characters
	maxDecimalExponent = 1000 // in absolute value
)

var errNotDecimal = errors.New("not a decimal")

// checkDecimal checks that s is a decimal number, [+-]digits[.digits]
// [(e|E)[+-]digits] with at least one digit, of at most maxDecimalText
// characters and an exponent within ±maxDecimalExponent. Other syntax
// big.Rat would take (fractions, hexadecimal, binary exponents) is
// errNotDecimal.
func checkDecimal(s string) error {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return errNotDecimal
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if exp <= maxDecimalExponent {
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return errNotDecimal
		}
		if exp > maxDecimalExponent {
			sign := "+"
			if neg {
				sign = "-"
			}
			return fmt.Errorf("exponent %s%s is out of range (at most ±%d)", sign, truncate(strings.TrimLeft(s[start:i], "0"), 20), maxDecimalExponent)
		}
	}
	if i != len(s) {
		return errNotDecimal
	}
	if len(s) > maxDecimalText {
		return fmt.Errorf("%d characters, more than %d", len(s), maxDecimalText)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ParseText converts text to a value of type dt as [Rows.AppendValues]
// takes it: "42" for integers, "2024-01-31" for DATE, and so on.
func ParseText(dt arrow.DataType, s string) (any, error) { return fromString(dt, s) }
