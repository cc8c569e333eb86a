package format

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// Parser parses one byte format. Split and Parse are called from one
// goroutine.
type Parser interface {
	// Split returns the length of the first record in data, separators
	// included, or 0 if data does not yet hold a whole record. atEOF says
	// no more bytes will follow: the rest is then the last record.
	Split(data []byte, atEOF bool) int
	// Parse appends the records in block (whole records, as Split cut them)
	// to rows. base is the stream offset of block[0], for positions in
	// errors; base 0 is the start of the input (a csv header is skipped
	// there). Malformed records, and records longer than max_record_bytes,
	// are skipped and returned as errors.
	Parse(block []byte, base int64, rows *Rows) []connectors.ParseError
}

// DefaultMaxRecordBytes is the default of the max_record_bytes format
// option: 16 MiB.
const DefaultMaxRecordBytes = 16 << 20

// maxMaxRecordBytes bounds the max_record_bytes option: 1 GiB.
const maxMaxRecordBytes = 1 << 30

// RecordOptions are format options of Sluice's own, shared by json and
// csv (Feldera has neither). They are embedded in [JSONConfig] and
// [CSVConfig], so they sit beside the format's other options:
// {"name": "csv", "config": {"headers": true, "max_record_bytes": 1048576}}.
type RecordOptions struct {
	// MaxRecordBytes bounds the size of one record, separators included
	// (max_record_bytes; default [DefaultMaxRecordBytes], at most 1 GiB).
	// A longer record is skipped and reported as a parse error, and a
	// [Stream] holds at most about this many bytes plus its read buffer
	// while it skips it: the record's bytes are discarded as they arrive,
	// up to its end (the next newline; for a JSON array, the end of the
	// element), and counted in the checkpoint offset. In csv, a quoted
	// field still open after this many bytes (a stray `"`) ends its record
	// at the first newline after the record's start, and reading goes on
	// from there.
	MaxRecordBytes int `json:"max_record_bytes,omitempty"`
	// ReplaceInvalidUTF8 replaces byte sequences that are not valid UTF-8
	// with U+FFFD (replace_invalid_utf8): in the whole record for json, in
	// the fields of VARCHAR columns for csv. By default (false) such a
	// record is skipped and reported as a parse error, since Parquet and
	// Arrow strings must be UTF-8 and strict readers reject files that
	// hold anything else.
	ReplaceInvalidUTF8 bool `json:"replace_invalid_utf8,omitempty"`
}

// validate applies the default and checks the bounds.
func (o *RecordOptions) validate() error {
	switch {
	case o.MaxRecordBytes == 0:
		o.MaxRecordBytes = DefaultMaxRecordBytes
	case o.MaxRecordBytes < 0 || o.MaxRecordBytes > maxMaxRecordBytes:
		return connectors.FormatError("max_record_bytes", "want 1 to %d bytes, got %d", maxMaxRecordBytes, o.MaxRecordBytes)
	}
	return nil
}

// fmtTooLong is the message of a record longer than max_record_bytes.
func fmtTooLong(size int64, max int) string {
	return fmt.Sprintf("record of %d bytes is longer than max_record_bytes (%d): skipped", size, max)
}

// NewParser returns the parser for a byte format: json or csv. A nil
// format is newline-delimited raw JSON. Config errors are
// connectors.FieldErrors of section "format".
func NewParser(f *pipeline.Format, schema *arrow.Schema) (Parser, error) {
	if f == nil {
		return newJSON(nil, schema)
	}
	switch f.Name {
	case "json":
		return newJSON(f.Config, schema)
	case "csv":
		return newCSV(f.Config, schema)
	case "parquet":
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("parquet is read by transports with random access (file_input)")}
	case "avro", "raw":
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("format %q is not supported yet", f.Name)}
	}
	return nil, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("unknown format %q (known: json, csv, parquet)", f.Name)}
}

// ParseMessage parses one message of a message-oriented source (the value
// of a Kafka message) into rows. Each message is a document of its own:
// its last record needs no newline, and with csv headers: true its first
// line is a header, skipped. A message that holds a header and no record
// is reported as a parse error, so that a producer sending one record per
// message to a connector configured with headers: true sees its records
// rejected rather than silently dropped. Positions in errors are "byte N"
// within the message.
func ParseMessage(p Parser, msg []byte, rows *Rows) []connectors.ParseError {
	if mp, ok := p.(interface {
		parseMessage([]byte, *Rows) []connectors.ParseError
	}); ok {
		return mp.parseMessage(msg, rows)
	}
	return p.Parse(msg, 0, rows)
}

// headerSplitter is implemented by parsers whose input starts with a
// header (csv with headers: true): at stream offset 0, [Stream] cuts the
// first record with splitHeader, which takes the blank lines before the
// header and the header as one, so that no chunk, and so no checkpoint,
// ends between the start of the input and the end of its header (a read
// resumed there would take the header for a record).
type headerSplitter interface {
	splitHeader(data []byte, atEOF bool) int
}

// recordLimits is implemented by this package's parsers; [Stream] uses
// it to bound what it buffers.
type recordLimits interface {
	// maxRecordBytes is the max_record_bytes option.
	maxRecordBytes() int
	// newSkipper returns a skipper for one oversized record.
	newSkipper() skipper
	// lineBased says records end only at a newline (or the end of input).
	lineBased() bool
}

// skipper finds the end of a record that is too long to buffer, fed its
// bytes in pieces from the record's first byte.
type skipper interface {
	// skip returns the length of data up to and including the record's
	// last byte, or -1 if the record goes on past data.
	skip(data []byte) int
}

// lineSkipper ends a record at the next newline.
type lineSkipper struct{}

func (lineSkipper) skip(data []byte) int {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1
	}
	return -1
}

// invalidUTF8 returns the index of the first byte of b that is not valid
// UTF-8, or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

func positionError(pos int64, msg string, rec []byte) connectors.ParseError {
	if len(rec) > 200 {
		rec = rec[:200]
	}
	return connectors.ParseError{Position: fmt.Sprintf("byte %d", pos), Message: msg, Record: strings.ToValidUTF8(string(rec), "\uFFFD")}
}
