package iceberg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	icebergio "github.com/apache/iceberg-go/io"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/connectors/s3"
)

// fileIO is the iceberg-go IO Sluice gives its tables: local paths and
// s3:// through the connector's own S3 settings, read-only, with an
// optional relocation of moved paths.
type fileIO struct {
	ctx      context.Context
	settings s3.Settings

	once   sync.Once
	client *awss3.Client
	err    error

	// from and to relocate moved paths: a path under from is read under to.
	from, to string
}

var _ icebergio.ReadFileIO = (*fileIO)(nil)

func (f *fileIO) s3Client() (*awss3.Client, error) {
	f.once.Do(func() { f.client, f.err = f.settings.Client(f.ctx) })
	return f.client, f.err
}

// normalize strips "./" and a trailing "/".
func normalize(p string) string {
	p = strings.TrimSuffix(p, "/")
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	if p == "." {
		return ""
	}
	return p
}

// relocate maps a path under f.from to f.to.
func (f *fileIO) relocate(name string) string {
	if f.from == "" && f.to == "" {
		return name
	}
	n := normalize(name)
	if f.from == "" {
		if strings.Contains(n, "://") || strings.HasPrefix(n, "/") {
			return name
		}
		return joinPath(f.to, n)
	}
	if n == f.from || strings.HasPrefix(n, f.from+"/") {
		return joinPath(f.to, strings.TrimPrefix(n[len(f.from):], "/"))
	}
	return name
}

func joinPath(dir, rel string) string {
	if strings.Contains(dir, "://") {
		return strings.TrimSuffix(dir, "/") + "/" + rel
	}
	return filepath.Join(dir, filepath.FromSlash(rel))
}

// split returns (bucket, key) for s3:// and s3a:// paths, or the local path.
func split(name string) (bucket, key, local string, err error) {
	u, err := url.Parse(name)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // a plain or Windows path
		return "", "", name, nil
	}
	switch u.Scheme {
	case "s3", "s3a", "s3n":
		return u.Host, strings.TrimPrefix(u.Path, "/"), "", nil
	case "file":
		return "", "", u.Path, nil
	}
	return "", "", "", fmt.Errorf("%s: scheme %s is not supported (local paths, file:// and s3://)", name, u.Scheme)
}

// Open opens a file for reading.
func (f *fileIO) Open(name string) (icebergio.File, error) {
	name = f.relocate(name)
	bucket, key, local, err := split(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if local != "" {
		return os.Open(local)
	}
	client, err := f.s3Client()
	if err != nil {
		return nil, err
	}
	o, err := s3.OpenObject(f.ctx, client, bucket, key)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &s3File{Object: o, name: path.Base(key)}, nil
}

// ReadFile reads a whole file.
func (f *fileIO) ReadFile(name string) ([]byte, error) {
	file, err := f.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	_, err = file.ReadAt(buf, 0)
	return buf, err
}

// Remove is refused: iceberg_input only reads.
func (f *fileIO) Remove(name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: errors.ErrUnsupported}
}

// s3File is an S3 object as an icebergio.File.
type s3File struct {
	*s3.Object
	name string
}

func (s *s3File) Stat() (fs.FileInfo, error) { return s3Info{s.name, s.Size()}, nil }
func (s *s3File) Close() error               { return nil }

type s3Info struct {
	name string
	size int64
}

func (i s3Info) Name() string       { return i.name }
func (i s3Info) Size() int64        { return i.size }
func (i s3Info) Mode() fs.FileMode  { return 0o444 }
func (i s3Info) ModTime() time.Time { return time.Time{} }
func (i s3Info) IsDir() bool        { return false }
func (i s3Info) Sys() any           { return nil }

var metadataVersion = regexp.MustCompile(`^v?(\d+)(?:-.*)?\.metadata\.json$`)

// metadataFile resolves a metadata_location that is a table directory
// (the Hadoop catalog's layout): metadata/version-hint.text names the
// version ("2" is v2.metadata.json; a file stem is <stem>.metadata.json),
// else the highest-numbered *.metadata.json. A *.metadata.json location
// is returned as it is.
func (f *fileIO) metadataFile(loc string) (string, error) {
	if strings.HasSuffix(loc, ".metadata.json") {
		return loc, nil
	}
	dir := joinPath(loc, "metadata")
	if hint, err := f.ReadFile(joinPath(dir, "version-hint.text")); err == nil {
		h := strings.TrimSpace(string(hint))
		if _, err := strconv.Atoi(h); err == nil {
			return joinPath(dir, "v"+h+".metadata.json"), nil
		}
		return joinPath(dir, h+".metadata.json"), nil
	}
	_, _, local, err := split(dir)
	if err != nil || local == "" {
		return "", fmt.Errorf("%s: no metadata/version-hint.text; give metadata_location as a *.metadata.json file", loc)
	}
	es, err := os.ReadDir(local)
	if err != nil {
		return "", fmt.Errorf("%s is not an Iceberg table: %w", loc, err)
	}
	type cand struct {
		n    int
		name string
	}
	var cands []cand
	for _, e := range es {
		if m := metadataVersion.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			cands = append(cands, cand{n, e.Name()})
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%s is not an Iceberg table: no *.metadata.json in %s", loc, dir)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].n < cands[j].n })
	return joinPath(dir, cands[len(cands)-1].name), nil
}
