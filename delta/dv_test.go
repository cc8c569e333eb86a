package delta_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/internal/fixture"
)

// TestDecodeZ85 checks the decoder against ZeroMQ's test vector (RFC 32)
// and its errors.
func TestDecodeZ85(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []byte
		err      string
	}{
		{"rfc 32 vector", "HelloWorld", []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}, ""},
		{"empty", "", []byte{}, ""},
		{"length", "Hello", []byte{0x86, 0x4F, 0xD2, 0x6F}, ""},
		{"bad length", "Hell", nil, "length 4 is not a multiple of 5"},
		{"bad character", "Hel~o", nil, `invalid character '~' at 3`},
		{"out of range", "#####", nil, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := delta.DecodeZ85(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestDeletionVectorProtocolExamples decodes the examples of PROTOCOL.md,
// "Deletion Vector Descriptor Schema". The inline example is a known
// erratum (delta-io/delta pull request 3063): it holds rows 3, 4, 7, 11,
// 18 and 29, but in the older "native" layout with a big-endian magic
// number 1681511376, which no writer puts in a table; it is refused with
// the magic number, not misread. The relative example with random prefix
// "ab" is ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin.
func TestDeletionVectorProtocolExamples(t *testing.T) {
	ctx := context.Background()
	st, err := delta.OpenStorage(ctx, t.TempDir(), s3.Settings{})
	require.NoError(t, err)
	inline := &delta.DeletionVector{StorageType: "i", PathOrInlineDv: "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", SizeInBytes: 40, Cardinality: 6}
	raw, err := delta.DecodeZ85(inline.PathOrInlineDv)
	require.NoError(t, err)
	require.Len(t, raw, 40)
	require.Equal(t, []byte{0x64, 0x39, 0xD3, 0xD0}, raw[:4])
	_, err = delta.ReadDeletionVector(ctx, st, inline)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "magic number 3503503716, want 1681511377")
	require.Equal(t, "iwi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", inline.UniqueID())

	four := int32(4)
	rel := &delta.DeletionVector{StorageType: "u", PathOrInlineDv: "ab^-aqEH.-t@S}K{vb[*k^", Offset: &four, SizeInBytes: 40, Cardinality: 6}
	p, err := rel.RelativePath()
	require.NoError(t, err)
	require.Equal(t, "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin", p)
	require.Equal(t, "uab^-aqEH.-t@S}K{vb[*k^@4", rel.UniqueID())
	_, err = delta.ReadDeletionVector(ctx, st, rel)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "deletion vector file ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin does not exist")

	var none *delta.DeletionVector
	require.Equal(t, "", none.UniqueID())
	bm, err := delta.ReadDeletionVector(ctx, st, none)
	require.NoError(t, err)
	require.Nil(t, bm)
}

// TestApplyDeletionVectors: add and remove reconcile by (path, deletion
// vector id), in either order within a commit (PROTOCOL.md, "Action
// Reconciliation").
func TestApplyDeletionVectors(t *testing.T) {
	one, two := int32(1), int32(2)
	dv1 := &delta.DeletionVector{StorageType: "u", PathOrInlineDv: "vBn[lx{q8@P<9BNH/isA", Offset: &one, SizeInBytes: 34, Cardinality: 1}
	dv2 := &delta.DeletionVector{StorageType: "u", PathOrInlineDv: "vBn[lx{q8@P<9BNH/isA", Offset: &two, SizeInBytes: 34, Cardinality: 2}
	f := func(dv *delta.DeletionVector) *delta.File { return &delta.File{Path: "a.parquet", DeletionVector: dv} }
	for _, tc := range []struct {
		name    string
		actions []delta.Action
		active  *delta.DeletionVector // nil: not active
		gone    bool
	}{
		{"remove then add", []delta.Action{{Remove: f(dv1)}, {Add: f(dv2)}}, dv2, false},
		{"add then remove", []delta.Action{{Add: f(dv2)}, {Remove: f(dv1)}}, dv2, false},
		{"remove of another vector", []delta.Action{{Remove: f(dv2)}}, dv1, false},
		{"remove", []delta.Action{{Remove: f(dv1)}}, nil, true},
		{"remove without the vector, re-added", []delta.Action{{Remove: f(nil)}, {Add: f(dv2)}}, dv2, false},
		{"remove without the vector, not re-added", []delta.Action{{Remove: f(nil)}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := delta.NewSnapshot()
			require.NoError(t, s.Apply([]delta.Action{{Add: f(dv1)}}))
			require.NoError(t, s.Apply(tc.actions))
			if tc.gone {
				require.Empty(t, s.Files)
				return
			}
			require.Equal(t, tc.active.UniqueID(), s.Files["a.parquet"].DVID())
		})
	}
}

// TestLoadDeletionVectorTable loads table_with_deletion_logs (deletion
// vectors, checkpoints at versions 10 and 20) both ways: replaying the
// log, and from _last_checkpoint. The one data file is active with the
// deletion vector its newest add in the JSON log names.
func TestLoadDeletionVectorTable(t *testing.T) {
	ctx := context.Background()
	dir := fixture.Shared(t, "delta/table_with_deletion_logs")
	st, err := delta.OpenStorage(ctx, dir, s3.Settings{})
	require.NoError(t, err)
	var newest *delta.File // the newest add of the JSON commits, read here
	for v := int64(0); ; v++ {
		actions, err := delta.ReadCommit(ctx, st, v)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		require.NoError(t, err)
		for _, a := range actions {
			if a.Add != nil {
				newest = a.Add
			}
		}
	}
	require.NotNil(t, newest.DV())
	full, err := delta.LoadSnapshot(ctx, st, -1)
	require.NoError(t, err)
	latest, err := delta.LoadLatest(ctx, st)
	require.NoError(t, err)
	for _, s := range []*delta.Snapshot{full, latest} {
		require.Len(t, s.Files, 1)
		for _, f := range s.Files {
			require.Equal(t, newest.Path, f.Path)
			require.Equal(t, newest.DVID(), f.DVID())
			require.Equal(t, *newest.DeletionVector, *f.DeletionVector)
		}
	}
}

// TestReplacedVectorLeavesNoTombstone: a commit that replaces a file's
// deletion vector (remove with the old, add with the new, in either
// order) leaves the path active and not a tombstone, since whatever
// deletes tombstones by path (VACUUM) would delete a live file. A
// checkpoint's remove of a path that a later commit adds again with a
// vector is not loaded as a tombstone either.
func TestReplacedVectorLeavesNoTombstone(t *testing.T) {
	one, two := int32(1), int32(2)
	dv1 := &delta.DeletionVector{StorageType: "u", PathOrInlineDv: "vBn[lx{q8@P<9BNH/isA", Offset: &one, SizeInBytes: 34, Cardinality: 1}
	dv2 := &delta.DeletionVector{StorageType: "u", PathOrInlineDv: "vBn[lx{q8@P<9BNH/isA", Offset: &two, SizeInBytes: 34, Cardinality: 2}
	f := func(dv *delta.DeletionVector) *delta.File {
		return &delta.File{Path: "a.parquet", DeletionVector: dv, DeletionTimestamp: 1}
	}
	for _, tc := range []struct {
		name    string
		actions []delta.Action
	}{
		{"remove then add", []delta.Action{{Remove: f(dv1)}, {Add: f(dv2)}}},
		{"add then remove", []delta.Action{{Add: f(dv2)}, {Remove: f(dv1)}}},
		{"remove without the vector, then add", []delta.Action{{Remove: f(nil)}, {Add: f(dv2)}}},
		{"remove of another vector", []delta.Action{{Remove: f(dv2)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := delta.NewSnapshot()
			require.NoError(t, s.Apply([]delta.Action{{Add: f(dv1)}}))
			require.NoError(t, s.Apply(tc.actions))
			require.NotNil(t, s.Files["a.parquet"], "active")
			require.Nil(t, s.Tombstones["a.parquet"], "an active path is no tombstone")
		})
	}
	t.Run("removed, then re-added", func(t *testing.T) {
		s := delta.NewSnapshot()
		require.NoError(t, s.Apply([]delta.Action{{Add: f(nil)}}))
		require.NoError(t, s.Apply([]delta.Action{{Remove: f(nil)}}))
		require.NotNil(t, s.Tombstones["a.parquet"])
		require.NoError(t, s.Apply([]delta.Action{{Add: f(dv2)}}))
		require.Nil(t, s.Tombstones["a.parquet"])
	})

	t.Run("LoadTombstones", func(t *testing.T) {
		ctx := context.Background()
		st, err := delta.OpenStorage(ctx, t.TempDir(), s3.Settings{})
		require.NoError(t, err)
		proto := &delta.Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
			ReaderFeatures: []string{"deletionVectors"}, WriterFeatures: []string{"deletionVectors"}}
		md := &delta.Metadata{ID: "t", Format: delta.Format{Provider: "parquet"},
			SchemaString: `{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}`}
		commits := [][]delta.Action{
			{{Protocol: proto}, {MetaData: md}, {Add: f(nil)}},
			{{Remove: f(nil)}},
			{{Add: f(dv2)}}, // after the checkpoint of version 1
		}
		s := delta.NewSnapshot()
		for v, actions := range commits {
			require.NoError(t, delta.WriteCommit(ctx, st, int64(v), actions))
			if v == 1 {
				require.NoError(t, s.Apply(commits[0]))
				require.NoError(t, s.Apply(commits[1]))
				s.Version = 1
				require.NotNil(t, s.Tombstones["a.parquet"])
				require.NoError(t, delta.WriteCheckpoint(ctx, st, s))
			}
		}
		latest, err := delta.LoadLatest(ctx, st)
		require.NoError(t, err)
		require.Equal(t, []string{"_delta_log/00000000000000000001.checkpoint.parquet"}, latest.TombstonesFrom)
		require.Equal(t, dv2.UniqueID(), latest.Files["a.parquet"].DVID())
		require.NoError(t, latest.LoadTombstones(ctx, st))
		require.Empty(t, latest.Tombstones, "the checkpoint's remove is of a path active again")
	})
}

// TestDeletionVectorUntrustedDescriptor: a "u" vector's random prefix
// cannot name a file outside the table root, and a sizeInBytes larger
// than the file is refused before anything of that size is allocated.
func TestDeletionVectorUntrustedDescriptor(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	const uuid = "^-aqEH.-t@S}K{vb[*k^" // Z85 of d2c639aa-8816-431a-aaf6-d3fe2512ff61 (PROTOCOL.md's example)
	const name = "deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
	// A well-formed vector file holding row 3: format version 1, then
	// the big-endian size, the bitmap and its big-endian CRC-32.
	bitmap := binary.LittleEndian.AppendUint32(nil, delta.DVMagic)
	bitmap = binary.LittleEndian.AppendUint64(bitmap, 1)                                 // one bucket
	bitmap = binary.LittleEndian.AppendUint32(bitmap, 0)                                 // its key
	bitmap = append(bitmap, 0x3a, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 3, 0) // 32-bit roaring: one array container {3}
	vec := append([]byte{1}, binary.BigEndian.AppendUint32(nil, uint32(len(bitmap)))...)
	vec = binary.BigEndian.AppendUint32(append(vec, bitmap...), crc32.ChecksumIEEE(bitmap))
	for _, dir := range []string{root, filepath.Join(base, "outside")} {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), vec, 0o644))
	}
	st, err := delta.OpenStorage(ctx, root, s3.Settings{})
	require.NoError(t, err)
	one := int32(1)
	desc := func(prefix string, size int32) *delta.DeletionVector {
		return &delta.DeletionVector{StorageType: "u", PathOrInlineDv: prefix + uuid, Offset: &one, SizeInBytes: size, Cardinality: 1}
	}
	bm, err := delta.ReadDeletionVector(ctx, st, desc("", int32(len(bitmap))))
	require.NoError(t, err)
	require.Equal(t, []uint64{3}, bm.ToArray())

	t.Run("prefix", func(t *testing.T) {
		p, err := desc("ab", 1).RelativePath()
		require.NoError(t, err)
		require.Equal(t, "ab/"+name, p)
		for _, prefix := range []string{"../outside", "..", "a/../../outside", "/etc", `..\outside`} {
			_, err := desc(prefix, 1).RelativePath()
			require.ErrorContains(t, err, "is not a directory under the table root", prefix)
			_, err = delta.ReadDeletionVector(ctx, st, desc(prefix, int32(len(bitmap))))
			require.ErrorIs(t, err, connectors.ErrFatal, prefix)
			require.ErrorContains(t, err, "is not a directory under the table root", prefix)
		}
	})
	t.Run("size", func(t *testing.T) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := delta.ReadDeletionVector(ctx, st, desc("", math.MaxInt32))
		runtime.ReadMemStats(&after)
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "nothing of sizeInBytes is allocated")
		require.ErrorIs(t, err, connectors.ErrFatal)
		require.ErrorContains(t, err, name)
		require.ErrorContains(t, err, fmt.Sprintf("the file (%d bytes) ends before", len(vec)))
	})
}
