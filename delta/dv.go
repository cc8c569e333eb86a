package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
)

// Storage types of a [DeletionVector] (PROTOCOL.md, "Deletion Vector
// Descriptor Schema").
const (
	// DVRelative is a file under the table root whose name is derived
	// from a UUID: <random prefix>/deletion_vector_<uuid>.bin.
	DVRelative = "u"
	// DVInline is a bitmap stored in the log itself, Z85-encoded.
	DVInline = "i"
	// DVAbsolute is a file at an absolute path (a URI such as
	// s3://bucket/key or file:/path).
	DVAbsolute = "p"
)

// DVMagic is the little-endian number that starts a serialized
// RoaringBitmapArray (PROTOCOL.md, "Deletion Vector Format").
const DVMagic = 1681511377

// DeletionVector is a deletion vector descriptor: where the set of a data
// file's deleted rows is stored and how many rows it holds (PROTOCOL.md,
// "Deletion Vector Descriptor Schema"). Rows are 0-based positions in the
// Parquet file, counted across row groups.
type DeletionVector struct {
	// StorageType is DVRelative, DVInline or DVAbsolute.
	StorageType string `json:"storageType"`
	// PathOrInlineDv is, for "u", an optional random prefix followed by
	// a 20-character Z85-encoded UUID; for "i", the Z85-encoded bitmap;
	// for "p", the file's absolute path (a URI).
	PathOrInlineDv string `json:"pathOrInlineDv"`
	// Offset is, for "u" and "p", where the vector's 4-byte size field
	// starts in its file, in bytes from the file's start; absent for "i".
	Offset *int32 `json:"offset,omitempty"`
	// SizeInBytes is the serialized bitmap's size in bytes (magic number
	// included, size field and checksum excluded; before Z85 encoding
	// when inline).
	SizeInBytes int32 `json:"sizeInBytes"`
	// Cardinality is the number of rows the vector deletes.
	Cardinality int64 `json:"cardinality"`
}

// IsSet reports whether d describes a deletion vector: a nil descriptor,
// or one without a storage type (a null struct read from a checkpoint),
// deletes nothing.
func (d *DeletionVector) IsSet() bool { return d != nil && d.StorageType != "" }

// UniqueID identifies the vector among the vectors of one data file:
// <storageType><pathOrInlineDv>, followed by @<offset> when the offset is
// present; "" when d is not set (PROTOCOL.md, "Derived Fields"). A
// logical file of the table is the pair (path, UniqueID) (PROTOCOL.md,
// "Action Reconciliation").
func (d *DeletionVector) UniqueID() string {
	if !d.IsSet() {
		return ""
	}
	id := d.StorageType + d.PathOrInlineDv
	if d.Offset != nil {
		id += "@" + strconv.FormatInt(int64(*d.Offset), 10)
	}
	return id
}

// String describes the vector for messages: its file and offset, or
// "inline deletion vector".
func (d *DeletionVector) String() string {
	switch {
	case !d.IsSet():
		return "no deletion vector"
	case d.StorageType == DVInline:
		return "inline deletion vector " + strconv.Quote(d.PathOrInlineDv)
	}
	name, err := d.RelativePath()
	if d.StorageType == DVAbsolute {
		name, err = d.PathOrInlineDv, nil
	}
	if err != nil {
		name = strconv.Quote(d.PathOrInlineDv)
	}
	return fmt.Sprintf("deletion vector file %s at offset %d", name, d.offset())
}

// offset is where the vector's size field starts; an on-disk vector
// without an offset starts right after the file's version byte.
func (d *DeletionVector) offset() int64 {
	if d.Offset == nil {
		return 1
	}
	return int64(*d.Offset)
}

// RelativePath returns the file of a "u" vector relative to the table
// root: [<random prefix>/]deletion_vector_<uuid>.bin (PROTOCOL.md,
// "Derived Fields", absolutePath).
func (d *DeletionVector) RelativePath() (string, error) {
	if d.StorageType != DVRelative {
		return "", fmt.Errorf("deletion vector of storage type %q has no relative path", d.StorageType)
	}
	s := d.PathOrInlineDv
	if len(s) < 20 {
		return "", fmt.Errorf("deletion vector %q: want a random prefix and a 20-character Z85 UUID", s)
	}
	prefix, enc := s[:len(s)-20], s[len(s)-20:]
	// The prefix is a few random characters (a directory under the table
	// root): one that climbs out of the root or is absolute is refused.
	if strings.HasPrefix(prefix, "/") || strings.Contains(prefix, "..") || strings.Contains(prefix, `\`) {
		return "", fmt.Errorf("deletion vector %q: random prefix %q is not a directory under the table root", s, prefix)
	}
	u, err := DecodeZ85(enc)
	if err != nil {
		return "", fmt.Errorf("deletion vector %q: UUID: %w", s, err)
	}
	h := hex.EncodeToString(u)
	name := "deletion_vector_" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32] + ".bin"
	if prefix != "" {
		name = prefix + "/" + name
	}
	return name, nil
}

// z85Alphabet is ZeroMQ's Z85 alphabet (https://rfc.zeromq.org/spec/32/),
// the Base85 variant Delta uses.
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var z85Value = func() (t [256]int16) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(z85Alphabet) {
		t[z85Alphabet[i]] = int16(i)
	}
	return t
}()

// DecodeZ85 decodes ZeroMQ Z85 (https://rfc.zeromq.org/spec/32/): every 5
// characters are 4 bytes, a big-endian base-85 number. The length of s
// must be a multiple of 5; a character outside the alphabet or a group
// above 2^32-1 is an error.
func DecodeZ85(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("z85: length %d is not a multiple of 5", len(s))
	}
	out := make([]byte, 0, len(s)/5*4)
	for i := 0; i < len(s); i += 5 {
		var v uint64
		for j := range 5 {
			c := z85Value[s[i+j]]
			if c < 0 {
				return nil, fmt.Errorf("z85: invalid character %q at %d", s[i+j], i+j)
			}
			v = v*85 + uint64(c)
		}
		if v > 0xFFFFFFFF {
			return nil, fmt.Errorf("z85: group at %d is out of range", i)
		}
		out = binary.BigEndian.AppendUint32(out, uint32(v))
	}
	return out, nil
}

// DecodeRoaringBitmapArray decodes a serialized deletion vector: the
// little-endian [DVMagic], then a 64-bit roaring bitmap in the portable
// format (PROTOCOL.md, "Deletion Vector Format"). Every byte of b must
// belong to the bitmap.
func DecodeRoaringBitmapArray(b []byte) (*roaring64.Bitmap, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%d bytes are too few for a RoaringBitmapArray", len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != DVMagic {
		return nil, fmt.Errorf("magic number %d, want %d", m, DVMagic)
	}
	body := b[4:]
	// The library allocates per bucket before reading it: refuse a count
	// the bytes cannot hold (a bucket takes a 4-byte key and at least 8
	// bytes of 32-bit bitmap).
	if n := binary.LittleEndian.Uint64(body); n > uint64(len(body)-8)/12 {
		return nil, fmt.Errorf("%d buckets do not fit in %d bytes", n, len(body))
	}
	bm := roaring64.New()
	n, err := bm.ReadFrom(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("roaring bitmap: %w", err)
	}
	if n != int64(len(body)) {
		return nil, fmt.Errorf("roaring bitmap: %d of %d bytes decoded", n, len(body))
	}
	return bm, nil
}

// ReadDeletionVector returns the set of row positions d deletes (nil
// when d is not set). For "u" and "p" it reads the vector's file (format
// version 1: a version byte, then at the offset a 4-byte big-endian
// size, the bitmap, and a 4-byte big-endian CRC-32 of the bitmap;
// PROTOCOL.md, "Deletion Vector File Storage Format"); for "i" it decodes
// the inline Z85 text. A wrong version, size, magic number, checksum or
// a cardinality other than d.Cardinality is a fatal error naming the
// file; a missing file is fatal too.
func ReadDeletionVector(ctx context.Context, st Storage, d *DeletionVector) (*roaring64.Bitmap, error) {
	if !d.IsSet() {
		return nil, nil
	}
	var data []byte
	var err error
	switch d.StorageType {
	case DVInline:
		if d.SizeInBytes < 0 {
			return nil, connectors.Fatal(fmt.Errorf("%s: %s: negative sizeInBytes %d", st, d, d.SizeInBytes))
		}
		if data, err = DecodeZ85(d.PathOrInlineDv); err != nil {
			return nil, connectors.Fatal(fmt.Errorf("%s: %s: %w", st, d, err))
		}
		if len(data) < int(d.SizeInBytes) || len(data)-int(d.SizeInBytes) > 3 {
			return nil, connectors.Fatal(fmt.Errorf("%s: %s: decodes to %d bytes, want sizeInBytes %d", st, d, len(data), d.SizeInBytes))
		}
		data = data[:d.SizeInBytes]
	case DVRelative, DVAbsolute:
		if data, err = readDVFile(ctx, st, d); err != nil {
			return nil, err
		}
	default:
		return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector %q: unknown storage type %q", st, d.PathOrInlineDv, d.StorageType))
	}
	bm, err := DecodeRoaringBitmapArray(data)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("%s: %s: %w", st, d, err))
	}
	if c := bm.GetCardinality(); c != uint64(d.Cardinality) {
		return nil, connectors.Fatal(fmt.Errorf("%s: %s: holds %d rows, but its descriptor's cardinality is %d", st, d, c, d.Cardinality))
	}
	return bm, nil
}

// readDVFile reads and checks the bitmap bytes of an on-disk vector.
func readDVFile(ctx context.Context, st Storage, d *DeletionVector) ([]byte, error) {
	var f DataFile
	var name string
	var err error
	if d.StorageType == DVRelative {
		if name, err = d.RelativePath(); err != nil {
			return nil, connectors.Fatal(fmt.Errorf("%s: %w", st, err))
		}
		f, err = st.Open(ctx, name)
	} else {
		name = d.PathOrInlineDv
		f, err = openAbsolute(ctx, st, name)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector file %s does not exist", st, name))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: deletion vector file %s: %w", st, name, err)
	}
	defer f.Close()
	bad := func(format string, args ...any) error {
		return connectors.Fatal(fmt.Errorf("%s: deletion vector file %s at offset %d: %s", st, name, d.offset(), fmt.Sprintf(format, args...)))
	}
	var version [1]byte
	if _, err := f.ReadAt(version[:], 0); err != nil {
		return nil, bad("reading the format version: %v", err)
	}
	if version[0] != 1 {
		return nil, bad("format version %d, want 1", version[0])
	}
	if d.offset() < 1 || d.SizeInBytes < 0 {
		return nil, bad("invalid offset or sizeInBytes %d", d.SizeInBytes)
	}
	// The sizes come from the log: check them against the file's size
	// before allocating for them.
	fileSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("%s: deletion vector file %s: %w", st, name, err)
	}
	if need := d.offset() + 4 + int64(d.SizeInBytes) + 4; need > fileSize {
		return nil, bad("the file (%d bytes) ends before the %d bytes of sizeInBytes and checksum", fileSize, d.SizeInBytes)
	}
	buf := make([]byte, 4+int(d.SizeInBytes)+4)
	if _, err := f.ReadAt(buf, d.offset()); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, bad("the file ends before the %d bytes of sizeInBytes and checksum", d.SizeInBytes)
		}
		return nil, fmt.Errorf("%s: deletion vector file %s: %w", st, name, err)
	}
	if size := binary.BigEndian.Uint32(buf); size != uint32(d.SizeInBytes) {
		return nil, bad("size field %d, but the descriptor's sizeInBytes is %d", size, d.SizeInBytes)
	}
	data := buf[4 : 4+d.SizeInBytes]
	if want, got := binary.BigEndian.Uint32(buf[4+d.SizeInBytes:]), crc32.ChecksumIEEE(data); want != got {
		return nil, bad("CRC-32 %08x, but the file records %08x", got, want)
	}
	return data, nil
}

// absoluteOpener is a storage that can open a file outside its table
// root, for "p" deletion vectors.
type absoluteOpener interface {
	openAbsolute(ctx context.Context, uri string) (DataFile, error)
}

// openAbsolute opens the file of a "p" deletion vector: a URI in the
// format of an add action's path.
func openAbsolute(ctx context.Context, st Storage, uri string) (DataFile, error) {
	o, ok := st.(absoluteOpener)
	if !ok {
		return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector file %s: this storage cannot open absolute paths", st, uri))
	}
	return o.openAbsolute(ctx, uri)
}

// openAbsolute opens a local absolute path or file: URI.
func (l localStorage) openAbsolute(_ context.Context, uri string) (DataFile, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector path %q: %w", l, uri, err))
	}
	switch {
	case u.Scheme == "file":
		return os.Open(filepath.FromSlash(u.Path))
	case u.Scheme == "" && strings.HasPrefix(u.Path, "/"):
		return os.Open(filepath.FromSlash(u.Path))
	}
	return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector path %q: want an absolute local path or file: URI for a local table", l, uri))
}

// openAbsolute opens an s3:// (or s3a://) URI with the table's client.
func (s *s3Storage) openAbsolute(ctx context.Context, uri string) (DataFile, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "s3" && u.Scheme != "s3a") || u.Host == "" {
		return nil, connectors.Fatal(fmt.Errorf("%s: deletion vector path %q: want s3://bucket/key for an S3 table", s, uri))
	}
	key := strings.TrimPrefix(u.Path, "/")
	o, err := s3.OpenObject(ctx, s.client, u.Host, key)
	if notFound(err) {
		return nil, fmt.Errorf("%s: %w", uri, fs.ErrNotExist)
	}
	if err != nil {
		return nil, s3.ReachError("open", u.Host, key, err)
	}
	return nopCloser{o}, nil
}
