package format

import (
	"bytes"
	"errors"
	"io"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
)

// ErrNoData is returned by [Stream.Next] when the reader is at its current
// end but more may come (follow mode): wait, then call Next again.
var ErrNoData = errors.New("no data yet")

// readSize is the stream's first buffer size, and what it reads beyond a
// record of max_record_bytes before it gives up on the record.
const readSize = 1 << 20

// Chunk is what [Stream.Next] returns: a record batch and the stream offset
// just past its last record.
type Chunk struct {
	// Record holds the chunk's rows; it may have none (when the chunk's
	// records were all malformed). The caller releases it.
	Record arrow.RecordBatch
	// Offset is the stream offset just past the chunk's records: the byte
	// checkpoint to resume from.
	Offset int64
	// Bytes is the number of bytes the chunk consumed: Offset minus the
	// previous chunk's Offset (the bytes of skipped records included).
	Bytes int64
	// Errors lists the records skipped: malformed, or longer than
	// max_record_bytes.
	Errors []connectors.ParseError
}

// Stream cuts an io.Reader into records with a [Parser] and parses them
// into record batches of at most batchSize records.
//
// A record longer than the parser's max_record_bytes is not buffered
// whole: once the record's bytes exceed the limit, the stream discards
// them as they arrive until the record's end, then reports the record as
// a parse error in the next chunk, whose Offset is past it. The buffer
// thus never grows beyond about max_record_bytes plus one read (1 MiB),
// in follow mode too.
type Stream struct {
	r          io.Reader
	parser     Parser
	rows       *Rows
	batchSize  int
	buf        []byte // unconsumed bytes are buf[pos:]
	pos        int
	offset     int64 // stream offset of buf[0]
	eof        bool
	chunkStart int64 // stream offset just past the last chunk

	max        int  // max_record_bytes
	lines      bool // records end only at a newline or the end of input
	newSkipper func() skipper
	tail       int // buf[pos:pos+tail] holds no record boundary (lines only)

	skip      skipper // non-nil while discarding an oversized record
	skipStart int64   // its stream offset
	skipHead  []byte  // its first bytes, for the error
	errs      []connectors.ParseError
}

// NewStream returns a stream over r, whose first byte is at stream offset
// offset. rows is owned by the caller.
func NewStream(r io.Reader, offset int64, parser Parser, rows *Rows, batchSize int) *Stream {
	s := &Stream{r: r, parser: parser, rows: rows, batchSize: batchSize, buf: make([]byte, 0, readSize), offset: offset, chunkStart: offset,
		max: DefaultMaxRecordBytes, newSkipper: func() skipper { return lineSkipper{} }}
	if l, ok := parser.(recordLimits); ok {
		s.max, s.lines, s.newSkipper = l.maxRecordBytes(), l.lineBased(), l.newSkipper
	}
	return s
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
		if s.skip != nil {
			if n := s.skip.skip(s.buf[s.pos:]); n >= 0 {
				s.pos += n
				s.endSkip()
			} else {
				s.pos = len(s.buf) // discarded; fill counts it in the offset
				switch {
				case s.eof && final:
					s.endSkip() // the record ends at the end of input
				case s.eof:
					return Chunk{}, ErrNoData
				default:
					if err := s.fill(); err != nil {
						return Chunk{}, err
					}
					continue
				}
			}
		}
		atEOF := s.eof && final
		end, count := s.pos, 0
		for count < s.batchSize && end < len(s.buf) {
			if end == s.pos && s.lines && !atEOF && s.tail > 0 && bytes.IndexByte(s.buf[s.pos+s.tail:], '\n') < 0 {
				break // no newline since the last try: still no whole record
			}
			var n int
			if hs, ok := s.parser.(headerSplitter); ok && s.offset+int64(end) == 0 {
				n = hs.splitHeader(s.buf, atEOF)
			} else {
				n = s.parser.Split(s.buf[end:], atEOF)
			}
			if n == 0 {
				if end == s.pos {
					s.tail = len(s.buf) - s.pos
				}
				break
			}
			end += n
			count++
		}
		if end > s.pos || len(s.errs) > 0 {
			errs := s.errs
			s.errs = nil
			if end > s.pos {
				errs = append(errs, s.parser.Parse(s.buf[s.pos:end], s.offset+int64(s.pos), s.rows)...)
				s.pos, s.tail = end, 0
			}
			off := s.offset + int64(end)
			c := Chunk{Record: s.rows.NewRecordBatch(), Offset: off, Bytes: off - s.chunkStart, Errors: errs}
			s.chunkStart = off
			return c, nil
		}
		if !atEOF && len(s.buf)-s.pos > s.max {
			s.startSkip()
			continue
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

// startSkip starts discarding the record at buf[pos:], longer than max.
func (s *Stream) startSkip() {
	s.skip = s.newSkipper()
	s.skipStart = s.offset + int64(s.pos)
	s.skipHead = append(s.skipHead[:0], s.buf[s.pos:s.pos+min(200, len(s.buf)-s.pos)]...)
	s.tail = 0
}

// endSkip reports the record skipped, which ends at buf[pos].
func (s *Stream) endSkip() {
	size := s.offset + int64(s.pos) - s.skipStart
	s.errs = append(s.errs, positionError(s.skipStart, fmtTooLong(size, s.max), bytes.TrimSpace(s.skipHead)))
	s.skip = nil
	s.tail = 0
}

// fill reads more bytes, compacting the buffer first, and growing it, up
// to max plus one read, when the partial record at its start fills it.
func (s *Stream) fill() error {
	if s.pos > 0 {
		n := copy(s.buf, s.buf[s.pos:])
		s.buf = s.buf[:n]
		s.offset += int64(s.pos)
		s.pos = 0
	}
	if len(s.buf) == cap(s.buf) {
		size := min(2*cap(s.buf), s.max+readSize)
		if size <= len(s.buf) {
			size = len(s.buf) + readSize
		}
		grown := make([]byte, len(s.buf), size)
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
