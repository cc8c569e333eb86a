package delta

import (
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

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
)

// entry is a file in a listed directory.
type entry struct {
	name    string // base name
	modTime time.Time
}

// dataFile is an open data file.
type dataFile interface {
	parquet.ReaderAtSeeker
	io.Closer
}

// store is where a table lives: a local directory or an S3 prefix. Paths
// are relative to the table root, with "/" separators.
type store interface {
	// list returns the files directly in dir whose names sort after
	// startAfter, in name order. A missing dir is an empty list.
	list(ctx context.Context, dir, startAfter string) ([]entry, error)
	// readFile returns a whole file; fs.ErrNotExist if it is missing.
	readFile(ctx context.Context, name string) ([]byte, error)
	// open opens a file for random access; fs.ErrNotExist if missing.
	open(ctx context.Context, name string) (dataFile, error)
	// String is the table's URI, for messages.
	String() string
}

// newStore returns the store for a table URI: a local path (or file://
// URL) or s3://bucket/prefix.
func newStore(ctx context.Context, uri string, settings s3.Settings) (store, error) {
	u, err := url.Parse(uri)
	if err == nil && u.Scheme == "s3" {
		client, err := settings.Client(ctx)
		if err != nil {
			return nil, err
		}
		return &s3Store{client: client, bucket: u.Host, root: strings.Trim(u.Path, "/")}, nil
	}
	root := uri
	if err == nil && u.Scheme == "file" {
		root = u.Path
	}
	if _, err := os.Stat(root); err != nil {
		return nil, connectors.Fatal(fmt.Errorf("delta table %s: %w", uri, err))
	}
	return localStore(root), nil
}

type localStore string

func (l localStore) String() string { return string(l) }

func (l localStore) list(_ context.Context, dir, startAfter string) ([]entry, error) {
	es, err := os.ReadDir(filepath.Join(string(l), filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, e := range es {
		if e.IsDir() || e.Name() <= startAfter {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since the listing
		}
		out = append(out, entry{name: e.Name(), modTime: info.ModTime()})
	}
	return out, nil
}

func (l localStore) readFile(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(l), filepath.FromSlash(name)))
}

func (l localStore) open(_ context.Context, name string) (dataFile, error) {
	return os.Open(filepath.Join(string(l), filepath.FromSlash(name)))
}

type s3Store struct {
	client *awss3.Client
	bucket string
	root   string // key prefix of the table root, without a trailing "/"
}

func (s *s3Store) String() string { return "s3://" + s.bucket + "/" + s.root }

func (s *s3Store) key(name string) string {
	if s.root == "" {
		return name
	}
	return s.root + "/" + name
}

func (s *s3Store) list(ctx context.Context, dir, startAfter string) ([]entry, error) {
	prefix := s.key(dir) + "/"
	in := &awss3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix, Delimiter: aws.String("/")}
	if startAfter != "" {
		in.StartAfter = aws.String(prefix + startAfter)
	}
	var out []entry
	pg := awss3.NewListObjectsV2Paginator(s.client, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, s3.ReachError("list", s.bucket, prefix, err)
		}
		for _, o := range page.Contents {
			name := path.Base(aws.ToString(o.Key))
			if name > startAfter {
				out = append(out, entry{name: name, modTime: aws.ToTime(o.LastModified)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func notFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NoSuchKey") || strings.Contains(err.Error(), "NotFound"))
}

func (s *s3Store) readFile(ctx context.Context, name string) ([]byte, error) {
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

func (s *s3Store) open(ctx context.Context, name string) (dataFile, error) {
	o, err := s3.OpenObject(ctx, s.client, s.bucket, s.key(name))
	if notFound(err) {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return nopCloser{o}, nil
}

type nopCloser struct{ *s3.Object }

func (nopCloser) Close() error { return nil }
