// Package url is the url_input transport
// (https://docs.feldera.com/connectors/sources/http-get): an HTTP GET of a
// URL, parsed with the connector's byte format. It always reaches end of
// input at the end of the body. The checkpoint is the byte offset just past
// the last whole record; a resumed connector asks for the rest with a Range
// request, or skips that many bytes when the server ignores Range.
//
// Each Source has its own HTTP client, without an overall timeout (a body
// may stream for hours), but with [ConnectTimeout] to dial,
// [TLSHandshakeTimeout] for the TLS handshake, [ResponseHeaderTimeout] from
// sending the request to the response's headers, and [IdleConnTimeout] for
// kept-alive connections. Responses are asked for without compression, so
// byte offsets and Range requests count the same bytes.
package url

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// Config is Feldera's url_input config.
type Config struct {
	// Path is the http:// or https:// URL to GET.
	Path string `json:"path"`
}

// Source reads one HTTP response body.
type Source struct {
	cfg    Config
	p      connectors.Params
	parser format.Parser
	body   io.ReadCloser
	rows   *format.Rows
	stream *format.Stream
	client *http.Client
}

// Checkpoint is url_input's position in the body, in bytes.
type Checkpoint struct {
	Offset int64 `json:"offset"`
}

// New validates the config and format.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	var errs []error
	if u, err := neturl.Parse(cfg.Path); cfg.Path == "" {
		errs = append(errs, connectors.TransportError("path", "required"))
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, connectors.TransportError("path", "want an http:// or https:// URL, got %q", cfg.Path))
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
	return &Source{cfg: cfg, p: p, parser: parser, client: newClient()}, nil
}

// Open sends the GET. A refused connection, a bad URL or a non-2xx status
// is fatal.
func (s *Source) Open(ctx context.Context, cp connectors.Checkpoint) error {
	var c Checkpoint
	if len(cp) > 0 {
		if err := json.Unmarshal(cp, &c); err != nil {
			return connectors.Fatal(fmt.Errorf("url_input checkpoint %s: %w", cp, err))
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Path, nil)
	if err != nil {
		return connectors.Fatal(err)
	}
	if c.Offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", c.Offset))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return connectors.Fatal(fmt.Errorf("GET %s: %w", s.cfg.Path, err))
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return connectors.Fatal(fmt.Errorf("GET %s: %s", s.cfg.Path, resp.Status))
	}
	s.body = resp.Body
	if c.Offset > 0 && resp.StatusCode != http.StatusPartialContent {
		if _, err := io.CopyN(io.Discard, resp.Body, c.Offset); err != nil {
			return fmt.Errorf("GET %s: skip to byte %d: %w", s.cfg.Path, c.Offset, err)
		}
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	s.stream = format.NewStream(s.body, c.Offset, s.parser, s.rows, s.p.BatchSize)
	return nil
}

// Read returns the next batch of the body.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	c, err := s.stream.Next(true)
	if errors.Is(err, io.EOF) {
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	if err != nil {
		if ctx.Err() != nil {
			return connectors.Batch{}, ctx.Err()
		}
		return connectors.Batch{}, fmt.Errorf("GET %s: %w", s.cfg.Path, err)
	}
	cp, _ := json.Marshal(Checkpoint{Offset: c.Offset})
	return connectors.Batch{Record: c.Record, Checkpoint: cp, Bytes: c.Bytes, Errors: c.Errors}, nil
}

// Close closes the response body and the client's idle connections.
func (s *Source) Close() error {
	defer s.client.CloseIdleConnections()
	if s.rows != nil {
		s.rows.Release()
	}
	if s.body != nil {
		return s.body.Close()
	}
	return nil
}

// Bounded is always true: a response body ends.
func (s *Source) Bounded() bool { return true }
