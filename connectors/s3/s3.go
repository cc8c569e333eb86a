package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// Config is Feldera's s3_input config plus the connection [Settings].
type Config struct {
	Settings
	// BucketName is the bucket to read.
	BucketName string `json:"bucket_name"`
	// Key reads the one object with this key.
	Key string `json:"key,omitempty"`
	// Prefix reads every object whose key starts with it, in key order;
	// "" reads the whole bucket. Exactly one of Key and Prefix is set.
	Prefix *string `json:"prefix,omitempty"`
	// MaxConcurrentFetches is accepted for compatibility with Feldera and
	// ignored: objects are read one after another, in key order.
	MaxConcurrentFetches int `json:"max_concurrent_fetches,omitempty"`
}

// Checkpoint is s3_input's position. Key is the object being read (or
// last read), Offset the bytes of it consumed (json, csv) or Row the rows
// (parquet); Done says Key has been read to its end. EndKey is the
// greatest key that matched when the connector first started: keys after
// it, written later, are not read.
type Checkpoint struct {
	Key    string `json:"key,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Row    int64  `json:"row,omitempty"`
	Done   bool   `json:"done,omitempty"`
	EndKey string `json:"end_key,omitempty"`
}

// Source reads the matching objects one after another.
type Source struct {
	cfg    Config
	p      connectors.Params
	parser format.Parser // nil for parquet
	client *awss3.Client

	cp   Checkpoint
	keys []string // keys still to read, in order; keys[0] is the current one when open
	// the open object, if any
	body   io.ReadCloser
	stream *format.Stream
	rows   *format.Rows
	pq     *format.ParquetReader
}

// New validates the config and format without I/O.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	errs := []error{cfg.Settings.Validate()}
	if cfg.BucketName == "" {
		errs = append(errs, connectors.TransportError("bucket_name", "required"))
	}
	switch {
	case cfg.Key == "" && cfg.Prefix == nil:
		errs = append(errs, connectors.TransportError("key", "set key (one object) or prefix (every object under it)"))
	case cfg.Key != "" && cfg.Prefix != nil:
		errs = append(errs, connectors.TransportError("prefix", "set key or prefix, not both"))
	}
	s := &Source{cfg: cfg, p: p}
	if p.Format == nil || p.Format.Name != "parquet" {
		parser, err := format.NewParser(p.Format, p.Schema)
		errs = append(errs, err)
		s.parser = parser
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Bounded is true: s3_input always reaches end of input.
func (s *Source) Bounded() bool { return true }

func (s *Source) formatName() string {
	if s.p.Format == nil {
		return "json"
	}
	return s.p.Format.Name
}

// keyFormat returns the format a key's extension says, or "" when the
// extension says nothing (no extension, .txt, .gz, ...).
func keyFormat(key string) string {
	switch strings.ToLower(path.Ext(key)) {
	case ".json", ".jsonl", ".ndjson":
		return "json"
	case ".csv", ".tsv":
		return "csv"
	case ".parquet", ".pq":
		return "parquet"
	case ".avro":
		return "avro"
	}
	return ""
}

// list returns the matching keys in order. Directory markers (keys ending
// in "/") are skipped. A key whose extension names another format than the
// connector's is a fatal error: a prefix must hold one format.
func (s *Source) list(ctx context.Context) ([]string, error) {
	if s.cfg.Key != "" {
		if _, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.cfg.BucketName, Key: &s.cfg.Key}); err != nil {
			return nil, ReachError("head", s.cfg.BucketName, s.cfg.Key, err)
		}
		return []string{s.cfg.Key}, s.checkFormats([]string{s.cfg.Key})
	}
	var keys []string
	pg := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{Bucket: &s.cfg.BucketName, Prefix: s.cfg.Prefix})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, ReachError("list", s.cfg.BucketName, *s.cfg.Prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); !strings.HasSuffix(k, "/") {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys) // S3 lists in UTF-8 byte order already; some compatible stores do not
	return keys, s.checkFormats(keys)
}

func (s *Source) checkFormats(keys []string) error {
	want := s.formatName()
	var wrong []string
	for _, k := range keys {
		if f := keyFormat(k); f != "" && f != want {
			wrong = append(wrong, fmt.Sprintf("%s (%s)", k, f))
		}
	}
	if len(wrong) == 0 {
		return nil
	}
	if len(wrong) > 5 {
		wrong = append(wrong[:5], fmt.Sprintf("and %d more", len(wrong)-5))
	}
	return connectors.Fatal(fmt.Errorf("s3://%s/%s holds objects that are not %s: %s; give each format its own prefix or connector",
		s.cfg.BucketName, s.prefixOrKey(), want, strings.Join(wrong, ", ")))
}

func (s *Source) prefixOrKey() string {
	if s.cfg.Prefix != nil {
		return *s.cfg.Prefix
	}
	return s.cfg.Key
}

// Resolve lists the objects at the connector's first start and fixes the
// last one: objects written later under keys after it are not read.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	client, err := s.cfg.Settings.Client(ctx)
	if err != nil {
		return nil, err
	}
	s.client = client
	keys, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	cp := Checkpoint{}
	if len(keys) > 0 {
		cp.EndKey = keys[len(keys)-1]
	} else {
		cp.Done = true // nothing matched: end of input at once
	}
	return json.Marshal(cp)
}

// Open lists the objects still to read after the checkpoint. A missing
// bucket or key, refused credentials, an unreachable endpoint and a prefix
// holding another format are fatal.
func (s *Source) Open(ctx context.Context, checkpoint connectors.Checkpoint) error {
	if len(checkpoint) > 0 {
		if err := json.Unmarshal(checkpoint, &s.cp); err != nil {
			return connectors.Fatal(fmt.Errorf("s3_input checkpoint %s: %w", checkpoint, err))
		}
	}
	if s.client == nil {
		client, err := s.cfg.Settings.Client(ctx)
		if err != nil {
			return err
		}
		s.client = client
	}
	keys, err := s.list(ctx)
	if err != nil {
		return err
	}
	if len(checkpoint) == 0 && len(keys) > 0 { // no Resolve ran (a test, or a direct caller)
		s.cp.EndKey = keys[len(keys)-1]
	}
	for _, k := range keys {
		if s.cp.EndKey == "" || k > s.cp.EndKey {
			break
		}
		if k < s.cp.Key || (k == s.cp.Key && s.cp.Done) {
			continue
		}
		s.keys = append(s.keys, k)
	}
	if s.cp.Key != "" && !s.cp.Done && (len(s.keys) == 0 || s.keys[0] != s.cp.Key) {
		return connectors.Fatal(fmt.Errorf("s3://%s/%s was removed while it was being read (checkpoint %s)", s.cfg.BucketName, s.cp.Key, checkpoint))
	}
	return nil
}

// openObject opens s.keys[0] at the checkpoint's position within it.
func (s *Source) openObject(ctx context.Context) error {
	key := s.keys[0]
	var off, row int64
	if key == s.cp.Key {
		off, row = s.cp.Offset, s.cp.Row
	} else {
		s.cp = Checkpoint{Key: key, EndKey: s.cp.EndKey}
	}
	if s.parser == nil {
		obj, err := OpenObject(ctx, s.client, s.cfg.BucketName, key)
		if err != nil {
			return err
		}
		s.pq, err = format.OpenParquet(ctx, obj, s.p.Schema, s.p.Alloc(), s.p.BatchSize, row)
		if err != nil {
			return fmt.Errorf("s3://%s/%s: %w", s.cfg.BucketName, key, err)
		}
		return nil
	}
	body, err := Stream(ctx, s.client, s.cfg.BucketName, key, off)
	if err != nil {
		return err
	}
	s.body = body
	if s.rows == nil {
		s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	}
	s.stream = format.NewStream(body, off, s.parser, s.rows, s.p.BatchSize)
	return nil
}

func (s *Source) closeObject() error {
	var err error
	if s.pq != nil {
		err = s.pq.Close()
		s.pq = nil
	}
	if s.body != nil {
		err = errors.Join(err, s.body.Close())
		s.body, s.stream = nil, nil
	}
	return err
}

// Read returns the next batch of the current object. At an object's end
// it returns an empty batch whose checkpoint marks the object done; after
// the last object, connectors.ErrEndOfInput.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	if len(s.keys) == 0 {
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	if s.pq == nil && s.stream == nil {
		if err := s.openObject(ctx); err != nil {
			return connectors.Batch{}, err
		}
	}
	var b connectors.Batch
	if s.pq != nil {
		rec, err := s.pq.Next(ctx)
		if err != nil && !errors.Is(err, io.EOF) {
			return b, fmt.Errorf("s3://%s/%s: %w", s.cfg.BucketName, s.keys[0], err)
		}
		if err == nil {
			s.cp.Row = s.pq.Row()
			b.Record = rec
			b.Checkpoint, _ = json.Marshal(s.cp)
			return b, nil
		}
	} else {
		c, err := s.stream.Next(true)
		if err != nil && !errors.Is(err, io.EOF) {
			return b, fmt.Errorf("read s3://%s/%s: %w", s.cfg.BucketName, s.keys[0], err)
		}
		if err == nil {
			s.cp.Offset = c.Offset
			for i := range c.Errors {
				c.Errors[i].Position = s.keys[0] + " " + c.Errors[i].Position
			}
			cp, _ := json.Marshal(s.cp)
			return connectors.Batch{Record: c.Record, Checkpoint: cp, Bytes: c.Bytes, Errors: c.Errors}, nil
		}
	}
	// The object's end.
	if err := s.closeObject(); err != nil {
		return b, err
	}
	s.cp.Done = true
	s.keys = s.keys[1:]
	b.Checkpoint, _ = json.Marshal(s.cp)
	return b, nil
}

// Close closes the open object.
func (s *Source) Close() error {
	err := s.closeObject()
	if s.rows != nil {
		s.rows.Release()
		s.rows = nil
	}
	return err
}
