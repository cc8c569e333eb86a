package format

import (
	"errors"
	"io"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
)

// ErrNoData is returned by [Stream.Next] when the reader is at its current
// end but more may come (follow mode): wait, then call Next again.
var ErrNoData = errors.New("no data yet")

// Chunk is what [Stream.Next] returns: a record batch and the stream offset
// just past its last record.
type Chunk struct {
	Record arrow.RecordBatch
	// Offset is the stream offset just past the chunk's records: the byte
	// checkpoint to resume from.
	Offset int64
	// Bytes is the number of bytes the chunk consumed.
	Bytes  int64
	Errors []connectors.ParseError
}

// Stream cuts an io.Reader into records with a [Parser] and parses them
// into record batches of at most batchSize records.
type Stream struct {
	r         io.Reader
	parser    Parser
	rows      *Rows
	batchSize int
	buf       []byte // unconsumed bytes are buf[pos:]
	pos       int
	offset    int64 // stream offset of buf[0]
	eof       bool
}

// NewStream returns a stream over r, whose first byte is at stream offset
// offset. rows is owned by the caller.
func NewStream(r io.Reader, offset int64, parser Parser, rows *Rows, batchSize int) *Stream {
	return &Stream{r: r, parser: parser, rows: rows, batchSize: batchSize, buf: make([]byte, 0, 1<<20), offset: offset}
}

// Next returns the next chunk. final says the reader's end is the end of
// input: a trailing record without a newline is then parsed, and io.EOF
// returned after it. Otherwise, at the reader's end Next keeps the partial
// record and returns [ErrNoData]. Errors from the reader are returned as
// they are.
func (s *Stream) Next(final bool) (Chunk, error) {
	if !final {
		s.eof = false // a followed file may have grown: read again
	}
	for {
		end, count := s.pos, 0
		for count < s.batchSize && end < len(s.buf) {
			n := s.parser.Split(s.buf[end:], s.eof && final)
			if n == 0 {
				break
			}
			end += n
			count++
		}
		if end > s.pos {
			errs := s.parser.Parse(s.buf[s.pos:end], s.offset+int64(s.pos), s.rows)
			c := Chunk{Record: s.rows.NewRecordBatch(), Offset: s.offset + int64(end), Bytes: int64(end - s.pos), Errors: errs}
			s.pos = end
			return c, nil
		}
		if s.eof {
			if final {
				return Chunk{}, io.EOF
			}
			return Chunk{}, ErrNoData
		}
		if err := s.fill(); err != nil {
			return Chunk{}, err
		}
	}
}

// fill reads more bytes, compacting or growing the buffer first.
func (s *Stream) fill() error {
	if s.pos > 0 {
		n := copy(s.buf, s.buf[s.pos:])
		s.buf = s.buf[:n]
		s.offset += int64(s.pos)
		s.pos = 0
	}
	if len(s.buf) == cap(s.buf) {
		grown := make([]byte, len(s.buf), 2*cap(s.buf))
		copy(grown, s.buf)
		s.buf = grown
	}
	n, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
	s.buf = s.buf[:len(s.buf)+n]
	if errors.Is(err, io.EOF) {
		s.eof = true
		return nil
	}
	return err
}
