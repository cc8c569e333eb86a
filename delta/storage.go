package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
)

// ErrExist is returned by [Storage.PutIfAbsent] when the name is taken:
// for a commit, another writer committed that version first.
var ErrExist = fs.ErrExist

// Entry is a file in a listed directory.
type Entry struct {
	Name    string // base name
	ModTime time.Time
}

// DataFile is a file open for random access.
type DataFile interface {
	parquet.ReaderAtSeeker
	io.Closer
}

// Storage is where a table lives: a local directory or an S3 prefix.
// Names are relative to the table root, with "/" separators. Its methods
// may be called concurrently.
type Storage interface {
	// List returns the files directly in dir whose names sort after
	// startAfter, in name order. A missing dir is an empty list.
	List(ctx context.Context, dir, startAfter string) ([]Entry, error)
	// ReadFile returns a whole file; fs.ErrNotExist if it is missing.
	ReadFile(ctx context.Context, name string) ([]byte, error)
	// Open opens a file for random access; fs.ErrNotExist if missing.
	Open(ctx context.Context, name string) (DataFile, error)
	// Put writes a whole file durably, replacing any file of that name.
	// Readers see the old or the new file, never a part.
	Put(ctx context.Context, name string, data []byte) error
	// PutIfAbsent writes a whole file durably unless the name exists,
	// atomically: of concurrent calls for one name exactly one succeeds,
	// the others fail with [ErrExist] (link(2) locally, a conditional
	// PutObject with If-None-Match: * on S3).
	PutIfAbsent(ctx context.Context, name string, data []byte) error
	// Create starts writing a whole file, to appear as Put's does when the
	// writer closes: locally streamed to a synced temporary file and
	// renamed, on S3 buffered and put. Abort drops it.
	Create(ctx context.Context, name string) (FileWriter, error)
	// Delete removes a file; a missing file is not an error.
	Delete(ctx context.Context, name string) error
	// String is the table's URI, for messages.
	String() string
}

// FileWriter is a file being written by [Storage.Create].
type FileWriter interface {
	io.Writer
	// Close makes the file durable and visible under its name.
	Close() error
	// Abort drops what was written; the name is untouched.
	Abort()
}

// NewStorage returns the storage for a table URI: a local path (or
// file:// URL) or s3://bucket/prefix, without checking that anything is
// there.
func NewStorage(ctx context.Context, uri string, settings s3.Settings) (Storage, error) {
	u, err := url.Parse(uri)
	if err == nil && u.Scheme == "s3" {
		client, err := settings.Client(ctx)
		if err != nil {
			return nil, err
		}
		return &s3Storage{client: client, bucket: u.Host, root: strings.Trim(u.Path, "/")}, nil
	}
	root := uri
	if err == nil && u.Scheme == "file" {
		root = u.Path
	}
	return localStorage(root), nil
}

// OpenStorage is [NewStorage] for a table that must exist: a missing
// local directory is a fatal error.
func OpenStorage(ctx context.Context, uri string, settings s3.Settings) (Storage, error) {
	st, err := NewStorage(ctx, uri, settings)
	if err != nil {
		return nil, err
	}
	if l, ok := st.(localStorage); ok {
		if _, err := os.Stat(string(l)); err != nil {
			return nil, connectors.Fatal(fmt.Errorf("delta table %s: %w", uri, err))
		}
	}
	return st, nil
}

type localStorage string

func (l localStorage) String() string { return string(l) }

func (l localStorage) path(name string) string {
	return filepath.Join(string(l), filepath.FromSlash(name))
}

func (l localStorage) List(_ context.Context, dir, startAfter string) ([]Entry, error) {
	es, err := os.ReadDir(l.path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range es {
		if e.IsDir() || e.Name() <= startAfter {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since the listing
		}
		out = append(out, Entry{Name: e.Name(), ModTime: info.ModTime()})
	}
	return out, nil
}

func (l localStorage) ReadFile(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(l.path(name))
}

func (l localStorage) Open(_ context.Context, name string) (DataFile, error) {
	return os.Open(l.path(name))
}

// temp writes data to a synced temporary file beside name and returns
// its path. Temporary names start with "." so that no reader takes them
// for a table file.
func (l localStorage) temp(name string, data []byte) (string, error) {
	dir := filepath.Dir(l.path(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func (l localStorage) Put(_ context.Context, name string, data []byte) error {
	tmp, err := l.temp(name, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, l.path(name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(l.path(name)))
}

func (l localStorage) PutIfAbsent(_ context.Context, name string, data []byte) error {
	tmp, err := l.temp(name, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, l.path(name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", name, ErrExist)
		}
		return err
	}
	return syncDir(filepath.Dir(l.path(name)))
}

func (l localStorage) Create(_ context.Context, name string) (FileWriter, error) {
	dir := filepath.Dir(l.path(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &localWriter{File: f, dst: l.path(name)}, nil
}

// localWriter is a temporary file renamed into place on Close.
type localWriter struct {
	*os.File
	dst string
}

func (w *localWriter) Close() error {
	err := w.File.Sync()
	if cerr := w.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.File.Name(), w.dst)
	}
	if err != nil {
		os.Remove(w.File.Name())
		return err
	}
	return syncDir(filepath.Dir(w.dst))
}

func (w *localWriter) Abort() {
	w.File.Close()
	os.Remove(w.File.Name())
}

func (l localStorage) Delete(_ context.Context, name string) error {
	err := os.Remove(l.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

type s3Storage struct {
	client *awss3.Client
	bucket string
	root   string // key prefix of the table root, without a trailing "/"
}

func (s *s3Storage) String() string { return "s3://" + s.bucket + "/" + s.root }

func (s *s3Storage) key(name string) string {
	if s.root == "" {
		return name
	}
	return s.root + "/" + name
}

func (s *s3Storage) List(ctx context.Context, dir, startAfter string) ([]Entry, error) {
	prefix := s.key(dir) + "/"
	in := &awss3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix, Delimiter: aws.String("/")}
	if startAfter != "" {
		in.StartAfter = aws.String(prefix + startAfter)
	}
	var out []Entry
	pg := awss3.NewListObjectsV2Paginator(s.client, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, s3.ReachError("list", s.bucket, prefix, err)
		}
		for _, o := range page.Contents {
			name := path.Base(aws.ToString(o.Key))
			if name > startAfter {
				out = append(out, Entry{Name: name, ModTime: aws.ToTime(o.LastModified)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func notFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NoSuchKey") || strings.Contains(err.Error(), "NotFound"))
}

func (s *s3Storage) ReadFile(ctx context.Context, name string) ([]byte, error) {
	body, err := s3.Stream(ctx, s.client, s.bucket, s.key(name), 0)
	if notFound(err) {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

func (s *s3Storage) Open(ctx context.Context, name string) (DataFile, error) {
	o, err := s3.OpenObject(ctx, s.client, s.bucket, s.key(name))
	if notFound(err) {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return nopCloser{o}, nil
}

func (s *s3Storage) Put(ctx context.Context, name string, data []byte) error {
	_, err := s.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.key(name)), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return s3.ReachError("put", s.bucket, s.key(name), err)
	}
	return nil
}

// PutIfAbsent is a conditional PutObject (If-None-Match: *): S3 answers
// 412 Precondition Failed when the key exists, and 409 Conflict when a
// concurrent conditional write of the key is in flight
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
// The caller then reads the key to learn who won.
func (s *s3Storage) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	_, err := s.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.key(name)), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		IfNoneMatch: aws.String("*"),
	})
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "PreconditionFailed" || api.ErrorCode() == "ConditionalRequestConflict") {
		return fmt.Errorf("%s: %w", name, ErrExist)
	}
	if err != nil {
		return s3.ReachError("put", s.bucket, s.key(name), err)
	}
	return nil
}

func (s *s3Storage) Create(ctx context.Context, name string) (FileWriter, error) {
	return &s3Writer{ctx: ctx, s: s, name: name}, nil
}

// s3Writer buffers a file and puts it on Close.
type s3Writer struct {
	bytes.Buffer
	ctx  context.Context
	s    *s3Storage
	name string
}

func (w *s3Writer) Close() error { return w.s.Put(w.ctx, w.name, w.Bytes()) }
func (w *s3Writer) Abort()       { w.Reset() }

func (s *s3Storage) Delete(ctx context.Context, name string) error {
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(name))})
	if err != nil && !notFound(err) {
		return s3.ReachError("delete", s.bucket, s.key(name), err)
	}
	return nil
}

type nopCloser struct{ *s3.Object }

func (nopCloser) Close() error { return nil }
