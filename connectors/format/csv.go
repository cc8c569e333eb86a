package format

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
)

// CSVConfig is Feldera's CSV format config
// (https://docs.feldera.com/formats/csv). Fields map to columns by position;
// an empty field is NULL (except in string columns). Quoting is RFC 4180's,
// as encoding/csv reads it: a field that starts with `"` is quoted, `""`
// inside it is a quote, and a record ends at a newline outside quotes.
type CSVConfig struct {
	// Delimiter separates fields; one character, default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// Headers says the input's first line is a header, skipped (its
	// content is not checked). For a file, a URL or an S3 object that is
	// the first line of the file. For a message-oriented source (Kafka),
	// every message is a CSV document of its own, so the first line of
	// every message is skipped, and a message that holds only a header is
	// reported as a parse error (see [ParseMessage]).
	Headers bool `json:"headers,omitempty"`
	// RecordOptions are max_record_bytes and replace_invalid_utf8. The
	// fields of VARCHAR columns must be valid UTF-8; VARBINARY fields take
	// the bytes as they are.
	RecordOptions
}

type csvParser struct {
	cfg    CSVConfig
	delim  []byte
	schema *arrow.Schema
	text   []bool // text[i]: column i is a string column, checked for UTF-8

	buf    []byte   // the current record's unquoted fields, end to end
	ends   []int    // where each field ends in buf
	fields []string // the current record's fields
}

func newCSV(raw json.RawMessage, schema *arrow.Schema) (*csvParser, error) {
	cfg := CSVConfig{Delimiter: ","}
	if err := connectors.DecodeConfig("format", raw, &cfg); err != nil {
		return nil, err
	}
	d, size := utf8.DecodeRuneInString(cfg.Delimiter)
	if size == 0 || size != len(cfg.Delimiter) || d == '"' || d == '\n' || d == '\r' || d == utf8.RuneError {
		return nil, connectors.FormatError("delimiter", "want one character other than a quote or newline, got %q", cfg.Delimiter)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &csvParser{cfg: cfg, delim: []byte(cfg.Delimiter), schema: schema, text: make([]bool, schema.NumFields())}
	for i, f := range schema.Fields() {
		p.text[i] = f.Type.ID() == arrow.STRING
	}
	return p, nil
}

// Split cuts at the first newline outside double quotes (RFC 4180). A
// quote opens a quoted field only at the start of a field, as in
// encoding/csv: a stray quote inside an unquoted field (a bare quote) is
// an error of its own record, not the start of a field that runs on. A
// quoted field still open at the end of input ends its record at the
// record's first newline (the record is then malformed), so a stray
// opening quote costs one line, not the rest of the input; the [Stream]
// does the same for one still open after max_record_bytes.
func (p *csvParser) Split(data []byte, atEOF bool) int {
	nl := bytes.IndexByte(data, '\n')
	if nl >= 0 && bytes.IndexByte(data[:nl], '"') < 0 {
		return nl + 1 // no quote on the line: the common case
	}
	fieldStart, inQuote := true, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inQuote {
			if c == '"' {
				if i+1 < len(data) && data[i+1] == '"' {
					i++ // an escaped quote
				} else {
					inQuote = false
				}
			}
			continue
		}
		switch {
		case c == '\n':
			return i + 1
		case c == '"' && fieldStart:
			inQuote, fieldStart = true, false
		case c == p.delim[0] && bytes.HasPrefix(data[i:], p.delim):
			fieldStart = true
			i += len(p.delim) - 1
		default:
			fieldStart = false
		}
	}
	if !atEOF {
		return 0
	}
	if inQuote && nl >= 0 {
		return nl + 1
	}
	return len(data)
}

// splitHeader cuts the input's first record when it has a header: the
// blank lines before the header and the header, as one. See
// headerSplitter.
func (p *csvParser) splitHeader(data []byte, atEOF bool) int {
	if !p.cfg.Headers {
		return p.Split(data, atEOF)
	}
	for off := 0; off < len(data); {
		n := p.Split(data[off:], atEOF)
		if n == 0 {
			return 0
		}
		blank := len(trimNewline(data[off:off+n])) == 0
		off += n
		if !blank {
			return off // through the header
		}
	}
	if atEOF {
		return len(data) // blank lines only
	}
	return 0
}

func (p *csvParser) maxRecordBytes() int { return p.cfg.MaxRecordBytes }

func (p *csvParser) lineBased() bool { return true }

// newSkipper ends an oversized record at the first newline after its
// start, inside quotes or not: a quoted field that long is most likely a
// stray quote, and the lines after it are most likely records.
func (p *csvParser) newSkipper() skipper { return lineSkipper{} }

func (p *csvParser) Parse(block []byte, base int64, rows *Rows) []connectors.ParseError {
	errs, _, _ := p.parse(block, base, rows, p.cfg.Headers && base == 0)
	return errs
}

func (p *csvParser) parseMessage(msg []byte, rows *Rows) []connectors.ParseError {
	errs, header, records := p.parse(msg, 0, rows, p.cfg.Headers)
	if header != nil && records == 0 {
		errs = append(errs, positionError(0, "the message holds a header line and no record: with csv headers: true, the first line of every message is a header, skipped", header))
	}
	return errs
}

// parse appends block's records to rows, skipping the first non-empty
// line if header is set. It returns the header skipped and the number of
// records after it, good or not.
func (p *csvParser) parse(block []byte, base int64, rows *Rows, header bool) (errs []connectors.ParseError, skipped []byte, records int) {
	for off := 0; off < len(block); {
		n := p.Split(block[off:], true)
		rec := block[off : off+n]
		pos := base + int64(off)
		off += n
		line := trimNewline(rec)
		if len(line) == 0 {
			continue // an empty line is no record, as in encoding/csv
		}
		if header {
			header, skipped = false, bytes.TrimSpace(rec)
			continue
		}
		records++
		if n > p.cfg.MaxRecordBytes {
			errs = append(errs, positionError(pos, fmtTooLong(int64(n), p.cfg.MaxRecordBytes), rec))
			continue
		}
		fields, err := p.readRecord(line)
		if err != nil {
			errs = append(errs, positionError(pos, fmt.Sprintf("invalid CSV: %v", err), bytes.TrimSpace(rec)))
			continue
		}
		if err := p.checkText(fields); err != nil {
			errs = append(errs, positionError(pos, err.Error(), bytes.TrimSpace(rec)))
			continue
		}
		if err := rows.AppendStrings(fields, 1); err != nil {
			errs = append(errs, positionError(pos, err.Error(), bytes.TrimSpace(rec)))
		}
	}
	return errs, skipped, records
}

// checkText checks that the fields of string columns are valid UTF-8, or
// replaces what is not with U+FFFD.
func (p *csvParser) checkText(fields []string) error {
	for i, f := range fields {
		if i >= len(p.text) || !p.text[i] || utf8.ValidString(f) {
			continue
		}
		if p.cfg.ReplaceInvalidUTF8 {
			fields[i] = string(bytes.ToValidUTF8([]byte(f), []byte("\uFFFD")))
			continue
		}
		return fmt.Errorf("column %s: invalid UTF-8 at byte %d of the field (set replace_invalid_utf8 to read it as U+FFFD)", p.schema.Field(i).Name, invalidUTF8([]byte(f)))
	}
	return nil
}

// trimNewline drops a record's line ending: "\n", "\r\n", or a "\r" at
// the end of input.
func trimNewline(rec []byte) []byte {
	rec = bytes.TrimSuffix(rec, []byte("\n"))
	return bytes.TrimSuffix(rec, []byte("\r"))
}

// readRecord splits one record, without its line ending, into fields as
// encoding/csv does (FieldsPerRecord -1, no LazyQuotes): `""` in a quoted
// field is a quote, "\r\n" in it is "\n", a quote in an unquoted field is
// csv.ErrBareQuote, and a quoted field not closed, or followed by
// anything but the delimiter, is csv.ErrQuote. The fields share one
// string, valid until the next call.
func (p *csvParser) readRecord(line []byte) ([]string, error) {
	buf, ends := p.buf[:0], p.ends[:0]
	for i := 0; ; {
		if i < len(line) && line[i] == '"' {
			i++
			for {
				j := bytes.IndexByte(line[i:], '"')
				if j < 0 {
					return nil, csv.ErrQuote // not closed
				}
				buf = appendCRLFAsLF(buf, line[i:i+j])
				i += j + 1
				if i < len(line) && line[i] == '"' {
					buf = append(buf, '"')
					i++
					continue
				}
				break
			}
			ends = append(ends, len(buf))
			if i == len(line) {
				break
			}
			if !bytes.HasPrefix(line[i:], p.delim) {
				return nil, csv.ErrQuote
			}
			i += len(p.delim)
			continue
		}
		k := bytes.Index(line[i:], p.delim)
		field := line[i:]
		if k >= 0 {
			field = line[i : i+k]
		}
		if bytes.IndexByte(field, '"') >= 0 {
			return nil, csv.ErrBareQuote
		}
		buf = append(buf, field...)
		ends = append(ends, len(buf))
		if k < 0 {
			break
		}
		i += k + len(p.delim)
	}
	p.buf, p.ends = buf, ends
	s := string(buf)
	fields, start := p.fields[:0], 0
	for _, e := range ends {
		fields = append(fields, s[start:e])
		start = e
	}
	p.fields = fields
	return fields, nil
}

func appendCRLFAsLF(buf, b []byte) []byte {
	for {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return append(buf, b...)
		}
		buf = append(buf, b[:i]...)
		buf = append(buf, '\n')
		b = b[i+2:]
	}
}
