package url

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// Config is Feldera's url_input config.
type Config struct {
	// Path is the http:// or https:// URL to GET.
	Path string `json:"path"`
}

// Checkpoint is url_input's position: the byte offset just past the last
// whole record, and the validator of the document the offset belongs to.
// Checkpoints without a validator (from before it was recorded) still
// resume.
type Checkpoint struct {
	// Offset is the byte offset just past the last whole record.
	Offset int64 `json:"offset"`
	// ETag is the document's strong ETag, if it has one.
	ETag string `json:"etag,omitempty"`
	// LastModified is the document's Last-Modified, recorded only when it
	// has no strong ETag.
	LastModified string `json:"last_modified,omitempty"`
}

// errEnd says a request for the document from some byte found that byte
// at the document's end.
var errEnd = errors.New("at the end of the document")

// Source reads one HTTP response body, resuming it across transient
// failures (see the package doc). Its methods are called from one
// goroutine; the caller releases the record batches Read returns.
type Source struct {
	cfg    Config
	where  string // the URL without its password, for messages
	p      connectors.Params
	parser format.Parser
	client *http.Client
	rows   *format.Rows
	stream *format.Stream
	done   bool // the checkpoint or the stream is at the document's end

	// The document's validator: the checkpoint's, else the first
	// response's strong ETag or Last-Modified.
	etag, lastModified string

	ctx      context.Context // the current Open's or Read's
	body     io.ReadCloser   // the current response's body, at byte pos
	reqCtx   context.Context // the current request's
	pos      int64           // every byte before pos went to the stream
	size     int64           // the document's length, -1 if unknown
	reached  bool            // the server answered, or Open had a checkpoint
	failures int             // transient failures since bytes last arrived
	lastErr  error           // the last of them
	wait     time.Duration   // the server's Retry-After for it

	mu     sync.Mutex
	cancel context.CancelFunc // cancels the current request and its body
}

// New validates the config and format; it does no I/O.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	var errs []error
	where := cfg.Path
	if u, err := neturl.Parse(cfg.Path); cfg.Path == "" {
		errs = append(errs, connectors.TransportError("path", "required"))
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, connectors.TransportError("path", "want an http:// or https:// URL, got %q", cfg.Path))
	} else {
		where = u.Redacted()
	}
	if p.Format != nil && p.Format.Name == "parquet" {
		errs = append(errs, &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("url_input reads json or csv")})
	}
	parser, err := format.NewParser(p.Format, p.Schema)
	if err != nil && (p.Format == nil || p.Format.Name != "parquet") {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, where: where, p: p, parser: parser, client: newClient(), size: -1}, nil
}

// Open sends the GET, from the checkpoint's offset with Range and If-Range
// when there is one. Transient failures are retried (see the package doc)
// and then returned as they are; 4xx responses other than 408, 416, 425 and
// 429, a document changed since the checkpoint and a bad checkpoint are
// fatal. A checkpoint at the document's end is not an error: Read then
// returns [connectors.ErrEndOfInput].
func (s *Source) Open(ctx context.Context, cp connectors.Checkpoint) error {
	var c Checkpoint
	if len(cp) > 0 {
		if err := json.Unmarshal(cp, &c); err != nil {
			return connectors.Fatal(fmt.Errorf("url_input checkpoint %s: %w", cp, err))
		}
		if c.Offset < 0 {
			return connectors.Fatal(fmt.Errorf("url_input checkpoint %s: negative offset", cp))
		}
	}
	s.etag, s.lastModified = c.ETag, c.LastModified
	s.pos, s.size = c.Offset, -1
	s.reached = c.Offset > 0 || c.ETag != "" || c.LastModified != ""
	s.ctx = ctx
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	if err := s.connect(); errors.Is(err, errEnd) {
		s.done = true
		return nil
	} else if err != nil {
		return fmt.Errorf("GET %s: %w", s.where, err)
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	s.stream = format.NewStream(reader{s}, c.Offset, s.parser, s.rows, s.p.BatchSize)
	return nil
}

// Read returns the next batch of the body, or [connectors.ErrEndOfInput]
// after its last. A body that breaks is asked for again from where it
// broke; errors are as Open's.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	if s.done {
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	s.ctx = ctx
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	c, err := s.stream.Next(true)
	if errors.Is(err, io.EOF) {
		s.done = true
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	if err != nil {
		if ctx.Err() != nil {
			return connectors.Batch{}, ctx.Err()
		}
		return connectors.Batch{}, fmt.Errorf("GET %s: %w", s.where, err)
	}
	cp, _ := json.Marshal(Checkpoint{Offset: c.Offset, ETag: s.etag, LastModified: s.lastModified})
	return connectors.Batch{Record: c.Record, Checkpoint: cp, Bytes: c.Bytes, Errors: c.Errors}, nil
}

// Close closes the response body and the client's idle connections.
func (s *Source) Close() error {
	s.interrupt()
	s.closeBody()
	if s.rows != nil {
		s.rows.Release()
		s.rows = nil
	}
	s.client.CloseIdleConnections()
	return nil
}

// Bounded is always true: a response body ends.
func (s *Source) Bounded() bool { return true }

// reader is the body as the stream reads it: bytes from pos on, across
// as many responses as it takes.
type reader struct{ s *Source }

func (r reader) Read(p []byte) (int, error) {
	n, err := r.s.readBody(p)
	if err != nil && err != io.EOF && errors.Is(err, io.EOF) {
		// "Get ...: EOF" (a connection closed before the response) is
		// a failure, not the end of the body the stream takes it for.
		err = notEOF{err}
	}
	return n, err
}

// notEOF is err, except that it is not io.EOF.
type notEOF struct{ err error }

func (e notEOF) Error() string        { return e.err.Error() }
func (e notEOF) Is(target error) bool { return target != io.EOF && errors.Is(e.err, target) }
func (e notEOF) As(target any) bool   { return errors.As(e.err, target) }

func (s *Source) readBody(p []byte) (int, error) {
	for {
		if s.body == nil {
			if err := s.connect(); errors.Is(err, errEnd) {
				return 0, io.EOF
			} else if err != nil {
				return 0, err
			}
		}
		n, err := s.body.Read(p)
		s.pos += int64(n)
		if n > 0 {
			s.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && (s.size < 0 || s.pos >= s.size):
			return n, io.EOF
		case s.ctx.Err() != nil:
			return n, s.ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the body ended at byte %d of %d", s.pos, s.size)
		}
		// A request canceled while the caller's context is alive was
		// interrupted by an earlier call's context: not a failure.
		interrupted := s.reqCtx.Err() != nil
		s.closeBody()
		if !interrupted {
			s.fail(fmt.Errorf("read at byte %d: %w", s.pos, err))
		}
		if n > 0 {
			return n, nil
		}
	}
}

// connect gets the document from byte pos into body, retrying transient
// failures with backoff. It returns errEnd when pos is the document's end.
func (s *Source) connect() error {
	for {
		if s.failures > 0 {
			if s.failures >= Attempts {
				return fmt.Errorf("%w (%d attempts)", s.lastErr, s.failures)
			}
			if err := sleep(s.ctx, max(FirstBackoff<<(s.failures-1), s.wait)); err != nil {
				return err
			}
		}
		err := s.get()
		switch {
		case err == nil, errors.Is(err, errEnd), errors.Is(err, connectors.ErrFatal):
			return err
		case s.ctx.Err() != nil:
			return s.ctx.Err()
		}
		s.fail(err)
	}
}

// fail counts a transient failure.
func (s *Source) fail(err error) {
	s.failures++
	s.lastErr = err
	s.wait = 0
	var se *statusError
	if errors.As(err, &se) {
		s.wait = se.wait
	}
}

// statusError is a transient status, with the server's Retry-After.
type statusError struct {
	status string
	wait   time.Duration
}

func (e *statusError) Error() string { return e.status }

// get sends one GET for the document from byte pos and, when it gets it,
// leaves body positioned at pos. Errors are fatal, errEnd, or transient.
func (s *Source) get() (err error) {
	off := s.pos
	ctx, cancel := context.WithCancel(context.WithoutCancel(s.ctx))
	s.setRequest(ctx, cancel)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Path, nil)
	if err != nil {
		return connectors.Fatal(err)
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if v := s.validator(); v != "" {
			req.Header.Set("If-Range", v)
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = requestError(err)
		if fatalDialError(err, !s.reached) {
			return connectors.Fatal(err)
		}
		return err
	}
	s.reached = true
	defer func() {
		if err != nil {
			resp.Body.Close()
		}
	}()
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent:
		first, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || first != off {
			return connectors.Fatal(fmt.Errorf("asked for the bytes from %d, got %s with Content-Range %s", off, resp.Status, describe(resp.Header.Get("Content-Range"))))
		}
		if same, how := s.sameDocument(resp.Header, false); !same {
			return s.changed(off, how)
		}
		s.size = total
	case code == http.StatusRequestedRangeNotSatisfiable && off > 0:
		return s.unsatisfiable(ctx, off, resp)
	case code/100 == 2:
		s.size = resp.ContentLength
		if off == 0 {
			// Nothing read yet: this response's validator is the one.
			s.etag, s.lastModified = "", ""
			break
		}
		// The server ignored Range (it answers 200 with the validator
		// we sent) or If-Range (the document changed).
		if same, how := s.sameDocument(resp.Header, true); !same {
			return s.changed(off, how)
		}
		if s.size >= 0 && s.size < off {
			return s.changed(off, fmt.Sprintf("it is now %d bytes", s.size))
		}
		if n, err := io.CopyN(io.Discard, resp.Body, off); errors.Is(err, io.EOF) && s.size < 0 {
			return s.changed(off, fmt.Sprintf("it is now %d bytes", n))
		} else if err != nil {
			return fmt.Errorf("skip to byte %d of a response without Range: %w", off, err)
		}
	case transientStatus(code):
		return &statusError{status: resp.Status, wait: retryAfter(resp.Header, time.Now())}
	default:
		return connectors.Fatal(errors.New(resp.Status + excerpt(resp.Body)))
	}
	s.adopt(resp.Header)
	s.body = resp.Body
	return nil
}

// unsatisfiable handles a 416 to a request from byte off > 0: errEnd when
// the document has exactly off bytes, else fatal (or transient when the
// HEAD that confirms the length fails transiently).
func (s *Source) unsatisfiable(ctx context.Context, off int64, resp *http.Response) error {
	if same, how := s.sameDocument(resp.Header, false); !same {
		return s.changed(off, how)
	}
	if first, total, ok := contentRange(resp.Header.Get("Content-Range")); ok && first < 0 {
		if total == off {
			s.size = total
			return errEnd
		}
		return s.changed(off, fmt.Sprintf("it is now %d bytes", total))
	}
	// No length: only a HEAD that confirms it makes this the end.
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.cfg.Path, nil)
	if err != nil {
		return connectors.Fatal(err)
	}
	head, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s from byte %d without a length; HEAD: %w", resp.Status, off, requestError(err))
	}
	head.Body.Close()
	switch {
	case transientStatus(head.StatusCode):
		return &statusError{status: resp.Status + " without a length; HEAD: " + head.Status, wait: retryAfter(head.Header, time.Now())}
	case head.StatusCode/100 != 2 || head.ContentLength < 0:
		return connectors.Fatal(fmt.Errorf("%s from byte %d without a length, and HEAD (%s) does not give the document's length", resp.Status, off, head.Status))
	}
	if same, how := s.sameDocument(head.Header, false); !same {
		return s.changed(off, how)
	}
	switch {
	case head.ContentLength < off:
		return s.changed(off, fmt.Sprintf("it is now %d bytes", head.ContentLength))
	case head.ContentLength > off:
		return connectors.Fatal(fmt.Errorf("%s from byte %d, but HEAD says the document has %d bytes", resp.Status, off, head.ContentLength))
	}
	s.size = off
	return errEnd
}

// validator returns the If-Range value: the ETag, else Last-Modified.
func (s *Source) validator() string {
	if s.etag != "" {
		return s.etag
	}
	return s.lastModified
}

// adopt records the document's validator from its first response (or the
// first after a checkpoint without one). Weak ETags promise equivalent,
// not identical, bytes and are not used.
func (s *Source) adopt(h http.Header) {
	if s.etag != "" || s.lastModified != "" {
		return
	}
	if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		s.etag = e
		return
	}
	s.lastModified = h.Get("Last-Modified")
}

// sameDocument compares h's validator with the recorded one; strict
// counts a missing one as a change. how describes a change.
func (s *Source) sameDocument(h http.Header, strict bool) (same bool, how string) {
	name, was := "ETag", s.etag
	if was == "" {
		name, was = "Last-Modified", s.lastModified
	}
	if was == "" {
		return true, ""
	}
	got := h.Get(name)
	if got == was || (got == "" && !strict) {
		return true, ""
	}
	return false, fmt.Sprintf("%s %s, was %q", name, describe(got), was)
}

// changed is the fatal error for a document that is not the one read up
// to byte off.
func (s *Source) changed(off int64, how string) error {
	since := fmt.Sprintf("the checkpoint at byte %d", off)
	if s.stream != nil {
		since = fmt.Sprintf("byte %d was read", off)
	}
	return connectors.Fatal(fmt.Errorf("the document changed since %s (%s); "+
		"resuming there would read the wrong records: read it from the beginning with a new connector", since, how))
}

// setRequest makes cancel the current request's and cancels the previous
// request.
func (s *Source) setRequest(ctx context.Context, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.reqCtx, s.cancel = ctx, cancel
}

// interrupt cancels the current request, unblocking a read of its body.
// It runs when the context of Open or Read ends, on another goroutine.
func (s *Source) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *Source) closeBody() {
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
}

// excerpt returns the start of an error response's body, for its message.
func excerpt(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 200))
	text := strings.Join(strings.Fields(string(b)), " ")
	if text == "" {
		return ""
	}
	return ": " + text
}
