package url_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/url"
	"github.com/sluicehq/sluice/pipeline"
)

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

const numRecords = 20_000

// document returns numRecords newline-delimited JSON records with ids
// 0..numRecords-1 (tagged, so two versions differ), and the byte offset
// just past each record.
func document(tag string) ([]byte, []int64) {
	var b bytes.Buffer
	ends := make([]int64, numRecords)
	for i := range numRecords {
		fmt.Fprintf(&b, `{"id": %d, "name": "%s record %06d"}`+"\n", i, tag, i)
		ends[i] = int64(b.Len())
	}
	return b.Bytes(), ends
}

// server serves one document with net/http's ServeContent (Range,
// If-Range, 416 with "Content-Range: bytes */N") and records every
// request's headers.
type server struct {
	*httptest.Server

	mu          sync.Mutex
	data        []byte
	etag        string
	modified    time.Time
	ignoreRange bool
	// intercept, if set, may answer the n-th GET (from 0) itself.
	intercept func(w http.ResponseWriter, r *http.Request, n int) bool
	gets      []http.Header
	heads     int
}

func newServer(t *testing.T, data []byte, etag string) *server {
	s := &server{data: data, etag: etag}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.gets)
	if r.Method == http.MethodGet {
		s.gets = append(s.gets, r.Header.Clone())
	} else {
		s.heads++
	}
	intercept := s.intercept
	s.mu.Unlock()
	if intercept != nil && r.Method == http.MethodGet && intercept(w, r, n) {
		return
	}
	s.serve(w, r)
}

// serve answers with the current document.
func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, etag, modified, ignore := s.data, s.etag, s.modified, s.ignoreRange
	s.mu.Unlock()
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	if ignore {
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, "", modified, bytes.NewReader(data))
}

// set replaces the document.
func (s *server) set(data []byte, etag string, modified time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.etag, s.modified = data, etag, modified
}

func (s *server) requests() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.gets...)
}

// breakBody answers a GET itself: 200 with the whole document's length and
// etag but only body[:cut], then closes the connection, with a FIN (the
// body ends early) or, when reset, an RST (ECONNRESET), after release is
// closed (nil: at once).
func breakBody(w http.ResponseWriter, data []byte, etag string, cut int, reset bool, release <-chan struct{}) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: %s\r\nContent-Type: application/json\r\n\r\n", len(data), etag)
	buf.Write(data[:cut])
	buf.Flush()
	if release != nil {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}
	if reset {
		conn.(*net.TCPConn).SetLinger(0)
	}
	conn.Close()
}

type source struct {
	connectors.Source
	alloc *memory.CheckedAllocator
}

// newSource builds a url_input source for u with newline-delimited JSON.
func newSource(t *testing.T, u string) *source {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	src, err := url.New(connectors.Params{
		Endpoint:  "t.u",
		Config:    json.RawMessage(fmt.Sprintf(`{"path": %q}`, u)),
		Format:    &pipeline.Format{Name: "json"},
		Schema:    schema,
		BatchSize: 500,
		Allocator: alloc,
	})
	require.NoError(t, err)
	s := &source{src, alloc}
	t.Cleanup(func() { require.NoError(t, s.Close()); alloc.AssertSize(t, 0) })
	return s
}

// open builds a source and opens it at cp.
func open(t *testing.T, u string, cp connectors.Checkpoint) *source {
	t.Helper()
	s := newSource(t, u)
	require.NoError(t, s.Open(context.Background(), cp))
	return s
}

// read reads until at least n records (n < 0: until an error) and returns
// the ids, the last checkpoint and the error that ended it (nil when n
// records were read).
func (s *source) read(t *testing.T, n int) ([]int64, connectors.Checkpoint, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []int64
	var cp connectors.Checkpoint
	for n < 0 || len(ids) < n {
		b, err := s.Read(ctx)
		if err != nil {
			return ids, cp, err
		}
		require.Empty(t, b.Errors)
		if b.Record != nil {
			col := b.Record.Column(0).(*array.Int64)
			for i := range col.Len() {
				ids = append(ids, col.Value(i))
			}
			b.Record.Release()
		}
		cp = b.Checkpoint
	}
	return ids, cp, nil
}

// requireEachOnce checks that ids holds 0..numRecords-1, each once.
func requireEachOnce(t *testing.T, ids []int64) {
	t.Helper()
	seen := make([]int, numRecords)
	for _, id := range ids {
		require.True(t, id >= 0 && id < numRecords, "id %d", id)
		seen[id]++
	}
	for id, n := range seen {
		require.Equal(t, 1, n, "record %d read %d times", id, n)
	}
}

func checkpoint(t *testing.T, cp connectors.Checkpoint) url.Checkpoint {
	t.Helper()
	var c url.Checkpoint
	require.NoError(t, json.Unmarshal(cp, &c))
	return c
}

// rangeStart returns the first byte a GET asked for (0 without Range).
func rangeStart(t *testing.T, h http.Header) int64 {
	t.Helper()
	r := h.Get("Range")
	if r == "" {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r, "bytes="), "-"), 10, 64)
	require.NoError(t, err, r)
	return n
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		format    *pipeline.Format
		want      string
	}{
		{"missing path", `{}`, nil, "transport.config.path: required"},
		{"not http", `{"path": "ftp://h/x"}`, nil, "want an http:// or https:// URL"},
		{"parquet", `{"path": "http://h/x"}`, &pipeline.Format{Name: "parquet"}, "url_input reads json or csv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := url.New(connectors.Params{Config: json.RawMessage(tc.cfg), Format: tc.format, Schema: schema, BatchSize: 10})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A whole read records the document's validator in every checkpoint, and
// its last checkpoint is the document's length.
func TestReadRecordsValidator(t *testing.T) {
	data, _ := document("v1")
	srv := newServer(t, data, `"v1"`)
	s := open(t, srv.URL, nil)
	ids, cp, err := s.read(t, -1)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	requireEachOnce(t, ids)
	require.Equal(t, url.Checkpoint{Offset: int64(len(data)), ETag: `"v1"`}, checkpoint(t, cp))
	_, err = s.Read(context.Background())
	require.ErrorIs(t, err, connectors.ErrEndOfInput)

	// Without an ETag, Last-Modified is the validator.
	modified := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	srv.set(data, "", modified)
	s = open(t, srv.URL, nil)
	_, cp, err = s.read(t, 100)
	require.NoError(t, err)
	require.Equal(t, modified.Format(http.TimeFormat), checkpoint(t, cp).LastModified)
	require.Empty(t, checkpoint(t, cp).ETag)
}

// A connector paused after its last commit resumes exactly at the end of
// the body; the server answers 416, which is end of input.
func TestResumeAtEnd(t *testing.T) {
	data, _ := document("v1")
	end := int64(len(data))
	noLength := func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Header.Get("Range") == "" {
			return false
		}
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return true
	}
	for _, tc := range []struct {
		name       string
		checkpoint string
		intercept  func(w http.ResponseWriter, r *http.Request, n int) bool
		wantHeads  int
		fatal      string // "": end of input
	}{
		{name: "with validator", checkpoint: fmt.Sprintf(`{"offset": %d, "etag": "\"v1\""}`, end)},
		{name: "old checkpoint without validator", checkpoint: fmt.Sprintf(`{"offset": %d}`, end)},
		{name: "no Content-Range, HEAD confirms the length", checkpoint: fmt.Sprintf(`{"offset": %d, "etag": "\"v1\""}`, end), intercept: noLength, wantHeads: 1},
		{name: "no Content-Range, HEAD says longer", checkpoint: fmt.Sprintf(`{"offset": %d}`, end-10), intercept: noLength, wantHeads: 1,
			fatal: fmt.Sprintf("but HEAD says the document has %d bytes", end)},
		{name: "past the end: the document shrank", checkpoint: fmt.Sprintf(`{"offset": %d}`, end+10),
			fatal: fmt.Sprintf("the document changed since the checkpoint at byte %d (it is now %d bytes)", end+10, end)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, data, `"v1"`)
			srv.intercept = tc.intercept
			s := newSource(t, srv.URL)
			err := s.Open(context.Background(), connectors.Checkpoint(tc.checkpoint))
			if tc.fatal != "" {
				require.ErrorIs(t, err, connectors.ErrFatal)
				require.ErrorContains(t, err, tc.fatal)
				return
			}
			require.NoError(t, err)
			_, err = s.Read(context.Background())
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			gets := srv.requests()
			require.Len(t, gets, 1)
			require.Equal(t, fmt.Sprintf("bytes=%d-", end), gets[0].Get("Range"))
			require.Equal(t, tc.wantHeads, srv.heads)
		})
	}
}

// 5xx, 429 and the like are retried inside the source; other 4xx are
// fatal at once; a server that keeps failing gives a non-fatal error.
func TestTransientStatus(t *testing.T) {
	data, _ := document("v1")
	failFirst := func(k, code int, header string) func(http.ResponseWriter, *http.Request, int) bool {
		return func(w http.ResponseWriter, _ *http.Request, n int) bool {
			if n >= k {
				return false
			}
			if header != "" {
				w.Header().Set("Retry-After", header)
			}
			http.Error(w, http.StatusText(code), code)
			return true
		}
	}
	for _, tc := range []struct {
		name      string
		intercept func(http.ResponseWriter, *http.Request, int) bool
		wantGets  int
		err       string // "": all records
		fatal     bool
	}{
		{name: "503 twice", intercept: failFirst(2, 503, ""), wantGets: 3},
		{name: "429 with Retry-After", intercept: failFirst(1, 429, "1"), wantGets: 2},
		{name: "502 then 504", intercept: failFirst(2, 502, ""), wantGets: 3},
		{name: "connection closed before the response, twice", intercept: func(w http.ResponseWriter, _ *http.Request, n int) bool {
			if n >= 2 {
				return false
			}
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			conn.Close()
			return true
		}, wantGets: 3},
		{name: "500 every time", intercept: failFirst(100, 500, ""), wantGets: url.Attempts, err: "500 Internal Server Error (5 attempts)"},
		{name: "404", intercept: failFirst(100, 404, ""), wantGets: 1, err: "404 Not Found: Not Found", fatal: true},
		{name: "403", intercept: failFirst(100, 403, ""), wantGets: 1, err: "403 Forbidden", fatal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, data, `"v1"`)
			srv.intercept = tc.intercept
			s := newSource(t, srv.URL)
			start := time.Now()
			err := s.Open(context.Background(), nil)
			require.Len(t, srv.requests(), tc.wantGets)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, tc.fatal, errors.Is(err, connectors.ErrFatal), "fatal: %v", err)
				return
			}
			require.NoError(t, err)
			if tc.name == "429 with Retry-After" {
				require.GreaterOrEqual(t, time.Since(start), time.Second)
			}
			ids, _, err := s.read(t, -1)
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			requireEachOnce(t, ids)
		})
	}
}

// The retries end when the context does.
func TestRetryHonoursContext(t *testing.T) {
	data, _ := document("v1")
	srv := newServer(t, data, `"v1"`)
	srv.intercept = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		w.Header().Set("Retry-After", "20")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	s := newSource(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Open(ctx, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}

// A body that breaks mid-way (the connection closed early, or reset) is
// asked for again with Range from the last byte handed to the parser,
// inside a record, and If-Range; every record is read exactly once.
func TestBodyBreaks(t *testing.T) {
	data, ends := document("v1")
	const etag = `"v1"`
	cut := int(ends[numRecords/2]) - 7 // inside record numRecords/2+1
	for _, tc := range []struct {
		name        string
		reset       bool
		ignoreRange bool // the server then answers 200 and the source skips
		then503     bool // the reconnection fails once
	}{
		{name: "closed early"},
		{name: "reset", reset: true},
		{name: "closed early, server ignores Range", ignoreRange: true},
		{name: "reset, then 503", reset: true, then503: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, data, etag)
			srv.ignoreRange = tc.ignoreRange
			var release chan struct{}
			if tc.reset {
				release = make(chan struct{})
			}
			srv.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
				switch {
				case n == 0:
					breakBody(w, data, etag, cut, tc.reset, release)
					return true
				case n == 1 && tc.then503:
					http.Error(w, "restarting", http.StatusServiceUnavailable)
					return true
				}
				return false
			}
			s := open(t, srv.URL, nil)
			// With an RST the kernel may drop bytes not yet read: break
			// the connection only once the records before the cut are
			// mostly read.
			first, _, err := s.read(t, numRecords/2-1000)
			require.NoError(t, err)
			if release != nil {
				close(release)
			}
			rest, cp, err := s.read(t, -1)
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			requireEachOnce(t, append(first, rest...))
			require.Equal(t, url.Checkpoint{Offset: int64(len(data)), ETag: etag}, checkpoint(t, cp))

			gets := srv.requests()
			want := 2
			if tc.then503 {
				want = 3
			}
			require.Len(t, gets, want)
			resumed := gets[len(gets)-1]
			require.Equal(t, etag, resumed.Get("If-Range"))
			if tc.reset {
				require.GreaterOrEqual(t, rangeStart(t, resumed), ends[numRecords/2-1000-1])
				require.LessOrEqual(t, rangeStart(t, resumed), int64(cut))
			} else {
				require.Equal(t, fmt.Sprintf("bytes=%d-", cut), resumed.Get("Range"))
			}
		})
	}
}

// A body that breaks and cannot be had again ends in a non-fatal error,
// not in end of input.
func TestBodyBreaksForGood(t *testing.T) {
	data, ends := document("v1")
	cut := int(ends[99])
	srv := newServer(t, data, `"v1"`)
	srv.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n == 0 {
			breakBody(w, data, `"v1"`, cut, false, nil)
			return true
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close() // before the response: the client's error wraps io.EOF
		return true
	}
	s := open(t, srv.URL, nil)
	ids, cp, err := s.read(t, -1)
	require.Len(t, ids, 100)
	require.Error(t, err)
	require.NotErrorIs(t, err, connectors.ErrEndOfInput)
	require.NotErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "(5 attempts)")
	require.Equal(t, int64(cut), checkpoint(t, cp).Offset)
	// The break is the first of the failures in a row.
	require.Len(t, srv.requests(), url.Attempts)
}

// A document that changed between the checkpoint and the resume (or
// between a broken body and its reconnection) is a fatal error naming the
// change, not a resume at a wrong offset.
func TestDocumentChanged(t *testing.T) {
	v1, _ := document("v1")
	v2, _ := document("v2 with longer names")
	t1 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	for _, tc := range []struct {
		name        string
		etag1       string
		etag2       string
		ignoreRange bool
		want        string
	}{
		{name: "ETag", etag1: `"v1"`, etag2: `"v2"`, want: `(ETag "\"v2\"", was "\"v1\"")`},
		{name: "ETag, server ignores Range", etag1: `"v1"`, etag2: `"v2"`, ignoreRange: true, want: `(ETag "\"v2\"", was "\"v1\"")`},
		{name: "ETag gone", etag1: `"v1"`, etag2: "", want: `(ETag none, was "\"v1\"")`},
		{name: "Last-Modified", want: fmt.Sprintf("(Last-Modified %q, was %q)", t2.Format(http.TimeFormat), t1.Format(http.TimeFormat))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, v1, tc.etag1)
			srv.modified = t1
			srv.ignoreRange = tc.ignoreRange
			s := open(t, srv.URL, nil)
			_, cp, err := s.read(t, 1000)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			c := checkpoint(t, cp)

			srv.set(v2, tc.etag2, t2)
			s = newSource(t, srv.URL)
			err = s.Open(context.Background(), cp)
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, fmt.Sprintf("the document changed since the checkpoint at byte %d %s", c.Offset, tc.want))
		})
	}

	t.Run("between a broken body and its reconnection", func(t *testing.T) {
		data, ends := document("v1")
		cut := int(ends[100]) + 3
		srv := newServer(t, data, `"v1"`)
		srv.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
			if n > 0 {
				return false
			}
			srv.set(v2, `"v2"`, time.Time{})
			breakBody(w, data, `"v1"`, cut, false, nil)
			return true
		}
		s := open(t, srv.URL, nil)
		ids, _, err := s.read(t, -1)
		require.Len(t, ids, 101)
		require.ErrorIs(t, err, connectors.ErrFatal)
		require.ErrorContains(t, err, fmt.Sprintf(`the document changed since byte %d was read (ETag "\"v2\"", was "\"v1\"")`, cut))
	})
}

// A server that ignores Range (200 with the whole body) still resumes: the
// source skips the checkpoint's bytes when the validator matches, or when
// there is none at all.
func TestServerIgnoresRange(t *testing.T) {
	data, _ := document("v1")
	for _, tc := range []struct {
		name string
		etag string
	}{
		{"same ETag", `"v1"`},
		{"no validator", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, data, tc.etag)
			srv.ignoreRange = true
			s := open(t, srv.URL, nil)
			first, cp, err := s.read(t, 7000)
			require.NoError(t, err)
			require.NoError(t, s.Close())

			s = open(t, srv.URL, cp)
			rest, _, err := s.read(t, -1)
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			requireEachOnce(t, append(first, rest...))
			gets := srv.requests()
			require.Len(t, gets, 2)
			require.Equal(t, fmt.Sprintf("bytes=%d-", checkpoint(t, cp).Offset), gets[1].Get("Range"))
			require.Equal(t, tc.etag, gets[1].Get("If-Range"))
		})
	}
}

// A checkpoint written before validators were recorded resumes with Range
// (no If-Range) and the next checkpoints carry the validator.
func TestOldCheckpoint(t *testing.T) {
	data, ends := document("v1")
	srv := newServer(t, data, `"v1"`)
	s := open(t, srv.URL, connectors.Checkpoint(fmt.Sprintf(`{"offset": %d}`, ends[4999])))
	ids, cp, err := s.read(t, -1)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Len(t, ids, numRecords-5000)
	require.Equal(t, int64(5000), ids[0])
	require.Equal(t, `"v1"`, checkpoint(t, cp).ETag)
	gets := srv.requests()
	require.Len(t, gets, 1)
	require.Empty(t, gets[0].Get("If-Range"))
	require.Equal(t, fmt.Sprintf("bytes=%d-", ends[4999]), gets[0].Get("Range"))
}

// A Read blocked on a stalled body returns when its context ends, and the
// next Read (another context) resumes the body where it stopped.
func TestReadContext(t *testing.T) {
	data, ends := document("v1")
	cut := int(ends[999])
	srv := newServer(t, data, `"v1"`)
	srv.intercept = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 0 {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("ETag", `"v1"`)
		w.Write(data[:cut])
		http.NewResponseController(w).Flush()
		select { // stall
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		return true
	}
	s := open(t, srv.URL, nil)
	first, _, err := s.read(t, 1000)
	require.NoError(t, err)
	require.Len(t, first, 1000)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Read(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)

	rest, _, err := s.read(t, -1)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	requireEachOnce(t, append(first, rest...))
	gets := srv.requests()
	require.Len(t, gets, 2)
	require.Equal(t, fmt.Sprintf("bytes=%d-", cut), gets[1].Get("Range"))
}

// A refused connection is fatal on a first Open (a wrong URL), transient
// when resuming from a checkpoint (a restarting server).
func TestRefusedConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	u := "http://" + addr + "/data.json"

	err = newSource(t, u).Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "connection refused")

	err = newSource(t, u).Open(context.Background(), connectors.Checkpoint(`{"offset": 10, "etag": "\"v1\""}`))
	require.Error(t, err)
	require.NotErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "connection refused")
	require.ErrorContains(t, err, "(5 attempts)")
}

// The CSV format goes through the same body and resume.
func TestCSVResume(t *testing.T) {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for i := range numRecords {
		fmt.Fprintf(w, "%d,csv record %d\n", i, i)
	}
	require.NoError(t, w.Flush())
	data := b.Bytes()
	srv := newServer(t, data, `"c1"`)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	newCSV := func() *source {
		src, err := url.New(connectors.Params{Config: json.RawMessage(fmt.Sprintf(`{"path": %q}`, srv.URL)),
			Format: &pipeline.Format{Name: "csv"}, Schema: schema, BatchSize: 1000, Allocator: alloc})
		require.NoError(t, err)
		return &source{src, alloc}
	}
	s := newCSV()
	require.NoError(t, s.Open(context.Background(), nil))
	first, cp, err := s.read(t, 3000)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s = newCSV()
	require.NoError(t, s.Open(context.Background(), cp))
	rest, _, err := s.read(t, -1)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.NoError(t, s.Close())
	requireEachOnce(t, append(first, rest...))
}

// A certificate the client does not trust is fatal.
func TestUntrustedCertificate(t *testing.T) {
	data, _ := document("v1")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	t.Cleanup(srv.Close)
	err := newSource(t, srv.URL).Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "certificate")
}
