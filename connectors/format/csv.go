package format

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
)

// CSVConfig is Feldera's CSV format config
// (https://docs.feldera.com/formats/csv). Fields map to columns by position;
// an empty field is NULL (except in string columns).
type CSVConfig struct {
	// Delimiter separates fields; one character, default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// Headers says the first record of the input is a header to skip.
	Headers bool `json:"headers,omitempty"`
}

type csvParser struct {
	cfg   CSVConfig
	delim rune
	n     int
}

func newCSV(raw json.RawMessage, schema *arrow.Schema) (*csvParser, error) {
	cfg := CSVConfig{Delimiter: ","}
	if err := connectors.DecodeConfig("format", raw, &cfg); err != nil {
		return nil, err
	}
	d, size := utf8.DecodeRuneInString(cfg.Delimiter)
	if size == 0 || size != len(cfg.Delimiter) || d == '"' || d == '\n' || d == '\r' {
		return nil, connectors.FormatError("delimiter", "want one character other than a quote or newline, got %q", cfg.Delimiter)
	}
	return &csvParser{cfg: cfg, delim: d, n: schema.NumFields()}, nil
}

// Split cuts at the first newline outside double quotes (RFC 4180).
func (p *csvParser) Split(data []byte, atEOF bool) int {
	inQuote := false
	for i, c := range data {
		switch c {
		case '"':
			inQuote = !inQuote
		case '\n':
			if !inQuote {
				return i + 1
			}
		}
	}
	if atEOF {
		return len(data)
	}
	return 0
}

func (p *csvParser) Parse(block []byte, base int64, rows *Rows) []connectors.ParseError {
	r := csv.NewReader(bytes.NewReader(block))
	r.Comma = p.delim
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	var errs []connectors.ParseError
	skipHeader := p.cfg.Headers && base == 0
	for {
		start := r.InputOffset()
		fields, err := r.Read()
		if errors.Is(err, io.EOF) {
			return errs
		}
		rec := block[start:r.InputOffset()]
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, positionError(base+start, fmt.Sprintf("invalid CSV: %v", err), bytes.TrimSpace(rec)))
			continue
		}
		if skipHeader {
			skipHeader = false
			continue
		}
		if err := rows.AppendStrings(fields, 1); err != nil {
			errs = append(errs, positionError(base+start, err.Error(), bytes.TrimSpace(rec)))
		}
	}
}
