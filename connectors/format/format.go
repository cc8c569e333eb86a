package format

import (
	"fmt"

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
	// errors. Malformed records are skipped and returned as errors.
	Parse(block []byte, base int64, rows *Rows) []connectors.ParseError
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

func positionError(pos int64, msg string, rec []byte) connectors.ParseError {
	if len(rec) > 200 {
		rec = rec[:200]
	}
	return connectors.ParseError{Position: fmt.Sprintf("byte %d", pos), Message: msg, Record: string(rec)}
}
