package format

import (
	"encoding/csv"
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"
)

// readRecord reads a record as encoding/csv (FieldsPerRecord -1, no
// LazyQuotes) reads it: the same fields, or the same error.
func TestCSVReadRecordAsEncodingCSV(t *testing.T) {
	tests := []struct {
		name  string
		delim string
		in    string // one record, as Split cuts it
	}{
		{name: "plain", delim: ",", in: "1,abc,2.5\n"},
		{name: "empty fields", delim: ",", in: ",,\n"},
		{name: "one empty field", delim: ",", in: " \n"},
		{name: "crlf", delim: ",", in: "a,b\r\n"},
		{name: "cr inside a field", delim: ",", in: "a\rb,c\n"},
		{name: "no newline at the end", delim: ",", in: "a,b"},
		{name: "cr at the end of input", delim: ",", in: "a,b\r"},
		{name: "quoted", delim: ",", in: `"a,b","c""d",""` + "\n"},
		{name: "quoted newline", delim: ",", in: "\"a\nb\",c\n"},
		{name: "quoted crlf", delim: ",", in: "\"a\r\nb\",c\r\n"},
		{name: "quoted at the end of the record", delim: ",", in: `a,"b"` + "\n"},
		{name: "bare quote", delim: ",", in: `a,b"c,d` + "\n"},
		{name: "space then quote", delim: ",", in: `a, "b"` + "\n"},
		{name: "text after the closing quote", delim: ",", in: `a,"b"c,d` + "\n"},
		{name: "quote never closed", delim: ",", in: `a,"b,c`},
		{name: "semicolon", delim: ";", in: "a;\"b;c\";d\n"},
		{name: "multibyte delimiter", delim: "¦", in: "a¦\"b¦c\"¦d¦\n"},
		{name: "tab", delim: "\t", in: "a\t\tb\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newCSV([]byte(`{"delimiter": "`+strings.ReplaceAll(tt.delim, "\t", `\t`)+`"}`), arrow.NewSchema(nil, nil))
			require.NoError(t, err)
			require.Equal(t, len(tt.in), p.Split([]byte(tt.in), true), "Split cuts the whole record")

			r := csv.NewReader(strings.NewReader(tt.in))
			r.Comma = []rune(tt.delim)[0]
			r.FieldsPerRecord = -1
			want, wantErr := r.Read()

			got, err := p.readRecord(trimNewline([]byte(tt.in)))
			if wantErr != nil {
				var pe *csv.ParseError
				require.True(t, errors.As(wantErr, &pe))
				require.ErrorIs(t, err, pe.Err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

// Split cuts at newlines outside quoted fields; a quote opens a field only
// at its start, and a field never closed ends at the first newline once
// no more input will come.
func TestCSVSplit(t *testing.T) {
	p, err := newCSV(nil, arrow.NewSchema(nil, nil))
	require.NoError(t, err)
	tests := []struct {
		name  string
		in    string
		atEOF bool
		want  int
	}{
		{name: "a line", in: "a,b\nc", want: 4},
		{name: "no newline yet", in: "a,b", want: 0},
		{name: "no newline, end of input", in: "a,b", atEOF: true, want: 3},
		{name: "quoted newline", in: "\"a\nb\",c\nd", want: 8},
		{name: "escaped quote", in: "\"a\"\"\nb\"\nc", want: 8},
		{name: "bare quote", in: "a,b\"c\nd,e\n", want: 6},
		{name: "quote after a delimiter", in: "a,\"b\nc\"\n", want: 8},
		{name: "open quote", in: "a,\"b\nc\nd", want: 0},
		{name: "open quote, end of input", in: "a,\"b\nc\nd", atEOF: true, want: 5},
		{name: "quote at the end of data", in: "\"a\"", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, p.Split([]byte(tt.in), tt.atEOF))
		})
	}
}
