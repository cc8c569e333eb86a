package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"

	gojson "github.com/goccy/go-json"

	"github.com/sluicehq/sluice/connectors"
)

// JSONConfig is Feldera's JSON format config
// (https://docs.feldera.com/formats/json).
type JSONConfig struct {
	// UpdateFormat is "raw" (each record is a row to insert, the default),
	// "insert_delete" ({"insert": {...}} or {"delete": {...}}) or
	// "debezium": Debezium's change event envelope
	// (https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-events),
	// {"op": "c"|"r"|"u"|"d", "before": {...}, "after": {...}}, bare or
	// inside {"schema": ..., "payload": {...}}. c and r insert after, u
	// deletes before and inserts after, d deletes before. A null record
	// (the tombstone Debezium sends after a delete) is skipped.
	UpdateFormat string `json:"update_format,omitempty"`
	// Array says records are elements of a JSON array rather than one per
	// line (newline-delimited JSON).
	Array bool `json:"array,omitempty"`
	// JSONFlavor is accepted for compatibility with Feldera; only the
	// default flavor is read.
	JSONFlavor string `json:"json_flavor,omitempty"`
	// RecordOptions are max_record_bytes and replace_invalid_utf8. A JSON
	// text must be UTF-8 (RFC 8259): a record with invalid UTF-8 anywhere
	// is a parse error unless replace_invalid_utf8 is set.
	RecordOptions
}

type jsonParser struct {
	cfg  JSONConfig
	fast *fastRecord // raw records: a decoder compiled for the schema, or nil
}

func newJSON(raw json.RawMessage, schema *arrow.Schema) (*jsonParser, error) {
	var cfg JSONConfig
	if err := connectors.DecodeConfig("format", raw, &cfg); err != nil {
		return nil, err
	}
	switch cfg.UpdateFormat {
	case "", "raw", "insert_delete", "debezium":
	case "snowflake", "redis":
		return nil, connectors.FormatError("update_format", "%q is not supported yet", cfg.UpdateFormat)
	default:
		return nil, connectors.FormatError("update_format", "unknown %q: want raw, insert_delete or debezium", cfg.UpdateFormat)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &jsonParser{cfg: cfg}
	if cfg.UpdateFormat == "" || cfg.UpdateFormat == "raw" {
		p.fast = newFastRecord(schema)
	}
	return p, nil
}

func (p *jsonParser) Split(data []byte, atEOF bool) int {
	if !p.cfg.Array {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1
		}
		if atEOF {
			return len(data)
		}
		return 0
	}
	return splitArrayElement(data, atEOF)
}

func (p *jsonParser) maxRecordBytes() int { return p.cfg.MaxRecordBytes }

func (p *jsonParser) lineBased() bool { return !p.cfg.Array }

func (p *jsonParser) newSkipper() skipper {
	if p.cfg.Array {
		return &arrayScanner{}
	}
	return lineSkipper{}
}

// splitArrayElement cuts one element of a JSON array, with the '[', ',' or
// whitespace before it and, for the last element, the ']' after it.
func splitArrayElement(data []byte, atEOF bool) int {
	var s arrayScanner
	if n := s.skip(data); n >= 0 {
		return n
	}
	if atEOF {
		return len(data)
	}
	return 0
}

// arrayScanner finds the end of a JSON array element, fed in pieces from
// the element's start (the '[', ',' or whitespace before it included).
// A raw newline ends a string, which valid JSON never holds, so that an
// unterminated string does not swallow the rest of the input.
type arrayScanner struct {
	depth                      int
	inString, escaped, started bool
}

func (s *arrayScanner) skip(data []byte) int {
	for i, c := range data {
		if s.inString {
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"', c == '\n':
				s.inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			if !s.started && s.depth == 0 {
				continue // the array's own bracket
			}
			s.depth++
		case '{':
			s.depth++
		case '}', ']':
			if s.depth == 0 {
				continue // the array's closing bracket
			}
			s.depth--
		case ',':
			if s.depth == 0 {
				if s.started {
					return i + 1
				}
				continue
			}
		case '"':
			s.inString = true
		}
		s.started = true
		if s.depth == 0 && (c == '}' || c == ']') {
			return i + 1
		}
	}
	return -1
}

func (p *jsonParser) Parse(block []byte, base int64, rows *Rows) []connectors.ParseError {
	var errs []connectors.ParseError
	for off := 0; off < len(block); {
		n := p.Split(block[off:], true)
		rec := block[off : off+n]
		pos := base + int64(off)
		off += n
		rec = bytes.TrimSpace(rec)
		if p.cfg.Array {
			rec = bytes.TrimLeft(rec, "[, \t\r\n")
			rec = bytes.TrimRight(rec, "], \t\r\n")
		}
		if len(rec) == 0 {
			continue
		}
		if n > p.cfg.MaxRecordBytes {
			errs = append(errs, positionError(pos, fmtTooLong(int64(n), p.cfg.MaxRecordBytes), rec))
			continue
		}
		if i := invalidUTF8(rec); i >= 0 {
			if !p.cfg.ReplaceInvalidUTF8 {
				errs = append(errs, positionError(pos, fmt.Sprintf("invalid UTF-8 at byte %d of the record (set replace_invalid_utf8 to read it as U+FFFD)", i), rec))
				continue
			}
			rec = bytes.ToValidUTF8(rec, []byte("\uFFFD"))
		}
		if err := p.parseRecord(rec, rows); err != nil {
			errs = append(errs, positionError(pos, err.Error(), rec))
		}
	}
	return errs
}

func (p *jsonParser) parseRecord(rec []byte, rows *Rows) error {
	if p.fast != nil && rec[0] == '{' {
		if values, ok := p.fast.decode(rec); ok {
			return rows.AppendRawJSON(values, 1)
		}
		// Not valid JSON for the fast decoder: the general path below
		// says what is wrong, in the same words as always.
	}
	dec := gojson.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return fmt.Errorf("invalid JSON: more than one value in the record")
	}
	if v == nil && p.cfg.UpdateFormat == "debezium" {
		return nil // a tombstone: the delete came in the event before it
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("want a JSON object, got %s", describe(v))
	}
	switch p.cfg.UpdateFormat {
	case "insert_delete":
		return insertDelete(obj, rows)
	case "debezium":
		return debezium(obj, rows)
	}
	return rows.AppendJSON(obj, 1)
}

func insertDelete(obj map[string]any, rows *Rows) error {
	if len(obj) != 1 {
		return fmt.Errorf(`insert_delete: want {"insert": {...}} or {"delete": {...}}`)
	}
	for k, inner := range obj {
		row, ok := inner.(map[string]any)
		if !ok {
			return fmt.Errorf("insert_delete: %q wants an object", k)
		}
		switch k {
		case "insert":
			return rows.AppendJSON(row, 1)
		case "delete":
			return rows.AppendJSON(row, -1)
		}
		return fmt.Errorf(`insert_delete: unknown key %q: want "insert" or "delete"`, k)
	}
	return nil
}

// debezium applies one Debezium change event.
func debezium(obj map[string]any, rows *Rows) error {
	if payload, ok := obj["payload"]; ok {
		if _, hasOp := obj["op"]; !hasOp {
			inner, ok := payload.(map[string]any)
			if !ok {
				return fmt.Errorf("debezium: payload wants an object, got %s", describe(payload))
			}
			obj = inner
		}
	}
	op, _ := obj["op"].(string)
	row := func(key string) (map[string]any, error) {
		v, present := obj[key]
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
		if !present || v == nil {
			return nil, fmt.Errorf("debezium: op %q without %q", op, key)
		}
		return nil, fmt.Errorf("debezium: %q wants an object, got %s", key, describe(v))
	}
	switch op {
	case "c", "r":
		after, err := row("after")
		if err != nil {
			return err
		}
		return rows.AppendJSON(after, 1)
	case "d":
		before, err := row("before")
		if err != nil {
			return err
		}
		return rows.AppendJSON(before, -1)
	case "u":
		before, err := row("before")
		if err != nil {
			return fmt.Errorf("%w (for updates the source table needs REPLICA IDENTITY FULL or equivalent)", err)
		}
		after, err := row("after")
		if err != nil {
			return err
		}
		return rows.AppendJSONUpdate(before, after)
	case "":
		return fmt.Errorf(`debezium: no "op" field: want a change event {"op": "c"|"r"|"u"|"d", "before": ..., "after": ...}`)
	}
	return fmt.Errorf("debezium: unsupported op %q (want c, r, u or d)", op)
}

// fastRecord decodes a raw JSON record straight into one json.RawMessage
// per column, with goccy/go-json and a struct type built for the schema
// (its fields tagged with the column names, matched case-insensitively
// as encoding/json does), instead of a map[string]any per record. The
// values are then converted exactly as the general path converts them.
type fastRecord struct {
	typ reflect.Type
	n   int
	v   reflect.Value // a reused *struct
}

// newFastRecord returns nil when a column name cannot be a JSON tag.
func newFastRecord(schema *arrow.Schema) *fastRecord {
	if schema == nil || schema.NumFields() == 0 {
		return nil
	}
	fields := make([]reflect.StructField, schema.NumFields())
	for i, f := range schema.Fields() {
		if f.Name == "" || f.Name == "-" || strings.ContainsAny(f.Name, "\",\\`") {
			return nil
		}
		fields[i] = reflect.StructField{
			Name: fmt.Sprintf("F%d", i),
			Type: reflect.TypeFor[json.RawMessage](),
			Tag:  reflect.StructTag(fmt.Sprintf(`json:%q`, f.Name)),
		}
	}
	typ := reflect.StructOf(fields)
	return &fastRecord{typ: typ, n: len(fields), v: reflect.New(typ)}
}

// decode returns the record's raw value of each column (nil where it is
// missing), valid until the next call, or false if rec is not a valid
// JSON object.
func (f *fastRecord) decode(rec []byte) ([]json.RawMessage, bool) {
	// A struct of n json.RawMessage fields is laid out as [n]json.RawMessage.
	values := unsafe.Slice((*json.RawMessage)(f.v.UnsafePointer()), f.n)
	clear(values)
	if err := gojson.UnmarshalNoEscape(rec, f.v.Interface()); err != nil {
		return nil, false
	}
	return values, true
}
