package delta_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/connectors/s3"
	dlog "github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/internal/fixture"
)

// The tests below derive what they expect from the table's JSON log,
// its Parquet files and its deletion vector files, read and decoded here
// by hand, independently of package delta and the connector.

// dvDesc is a deletion vector descriptor as the JSON log spells it.
type dvDesc struct {
	StorageType    string `json:"storageType"`
	PathOrInlineDv string `json:"pathOrInlineDv"`
	Offset         *int32 `json:"offset"`
	SizeInBytes    int32  `json:"sizeInBytes"`
	Cardinality    int64  `json:"cardinality"`
}

func (d *dvDesc) id() string {
	if d == nil {
		return ""
	}
	if d.Offset == nil {
		return d.StorageType + d.PathOrInlineDv
	}
	return fmt.Sprintf("%s%s@%d", d.StorageType, d.PathOrInlineDv, *d.Offset)
}

// logFile is an add or remove action.
type logFile struct {
	Path       string  `json:"path"`
	DataChange *bool   `json:"dataChange"`
	Stats      string  `json:"stats"`
	DV         *dvDesc `json:"deletionVector"`
}

func (f *logFile) numRecords(t *testing.T) int64 {
	var s struct {
		NumRecords *int64 `json:"numRecords"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.Stats), &s), f.Path)
	require.NotNil(t, s.NumRecords, "file %s has no numRecords", f.Path)
	return *s.NumRecords
}

func (f *logFile) dataChange() bool { return f.DataChange == nil || *f.DataChange }

// logAction is one line of a JSON commit; only add and remove matter.
type logAction struct {
	Add    *logFile `json:"add"`
	Remove *logFile `json:"remove"`
}

// readJSONLog reads every JSON commit of a table, version by version.
func readJSONLog(t *testing.T, dir string) [][]logAction {
	var out [][]logAction
	for v := 0; ; v++ {
		b, err := os.ReadFile(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", v)))
		if os.IsNotExist(err) {
			return out
		}
		require.NoError(t, err)
		var actions []logAction
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var a logAction
			require.NoError(t, json.Unmarshal(sc.Bytes(), &a))
			actions = append(actions, a)
		}
		out = append(out, actions)
	}
}

// activeFiles replays the log up to version v by the protocol's rule: a
// logical file is (path, deletion vector id).
func activeFiles(log [][]logAction, v int) map[string]*logFile {
	active := map[string]*logFile{}
	for _, actions := range log[:v+1] {
		for _, a := range actions {
			if a.Remove != nil {
				if f := active[a.Remove.Path]; f != nil && f.DV.id() == a.Remove.DV.id() {
					delete(active, a.Remove.Path)
				}
			}
		}
		for _, a := range actions {
			if a.Add != nil {
				active[a.Add.Path] = a.Add
			}
		}
	}
	return active
}

// derivedCount is Σ numRecords − Σ cardinality over the active files.
func derivedCount(t *testing.T, active map[string]*logFile) int64 {
	var n int64
	for _, f := range active {
		n += f.numRecords(t)
		if f.DV != nil {
			n -= f.DV.Cardinality
		}
	}
	return n
}

// z85Decode is a minimal Z85 decoder (ZeroMQ RFC 32).
func z85Decode(t *testing.T, s string) []byte {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
	require.Zero(t, len(s)%5, s)
	var out []byte
	for i := 0; i < len(s); i += 5 {
		var v uint32
		for _, c := range []byte(s[i : i+5]) {
			d := strings.IndexByte(alphabet, c)
			require.GreaterOrEqual(t, d, 0, s)
			v = v*85 + uint32(d)
		}
		out = binary.BigEndian.AppendUint32(out, v)
	}
	return out
}

// z85Encode is the inverse, for inline vectors written by the tests;
// len(b) must be a multiple of 4.
func z85Encode(b []byte) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		v := binary.BigEndian.Uint32(b[i:])
		var g [5]byte
		for j := 4; j >= 0; j-- {
			g[j] = alphabet[v%85]
			v /= 85
		}
		sb.Write(g[:])
	}
	return sb.String()
}

// handDecode returns the row positions a deletion vector deletes, decoded
// by hand: the file's bytes at the offset (big-endian size, bitmap,
// big-endian CRC-32), the magic number, and the portable 64-bit format
// (bucket count, then per bucket a key and a 32-bit roaring bitmap read
// with the roaring library).
func handDecode(t *testing.T, dir string, d *dvDesc) []uint64 {
	var data []byte
	switch d.StorageType {
	case "u", "p":
		var name string
		if d.StorageType == "u" {
			s := d.PathOrInlineDv
			u := hex.EncodeToString(z85Decode(t, s[len(s)-20:]))
			name = fmt.Sprintf("deletion_vector_%s-%s-%s-%s-%s.bin", u[:8], u[8:12], u[12:16], u[16:20], u[20:])
			if prefix := s[:len(s)-20]; prefix != "" {
				name = prefix + "/" + name
			}
			name = filepath.Join(dir, name)
		} else {
			name = strings.TrimPrefix(d.PathOrInlineDv, "file://")
		}
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		require.Equal(t, byte(1), b[0], "format version")
		off := int(*d.Offset)
		size := int(binary.BigEndian.Uint32(b[off:]))
		require.Equal(t, int(d.SizeInBytes), size)
		data = b[off+4 : off+4+size]
		require.Equal(t, binary.BigEndian.Uint32(b[off+4+size:]), crc32.ChecksumIEEE(data), "checksum of %s", name)
	case "i":
		data = z85Decode(t, d.PathOrInlineDv)[:d.SizeInBytes]
	default:
		t.Fatalf("storage type %q", d.StorageType)
	}
	require.Equal(t, uint32(1681511377), binary.LittleEndian.Uint32(data), "magic number")
	r := bytes.NewReader(data[4:])
	var buckets uint64
	require.NoError(t, binary.Read(r, binary.LittleEndian, &buckets))
	var rows []uint64
	for range buckets {
		var key uint32
		require.NoError(t, binary.Read(r, binary.LittleEndian, &key))
		bm := roaring.New()
		_, err := bm.ReadFrom(r)
		require.NoError(t, err)
		for _, low := range bm.ToArray() {
			rows = append(rows, uint64(key)<<32|uint64(low))
		}
	}
	require.Zero(t, r.Len(), "bytes left after the bitmap")
	require.Len(t, rows, int(d.Cardinality), "cardinality")
	return rows
}

// parquetRows reads a data file with pqarrow and renders each row, in
// file order, as the connector's tests do ("v|v|..."), taking the
// schema's columns by name.
func parquetRows(t *testing.T, path string, sc *arrow.Schema) []string {
	var rows []string
	require.NoError(t, fixture.ReadParquet(context.Background(), path, 7, func(rec arrow.RecordBatch) error {
		for i := range int(rec.NumRows()) {
			parts := make([]string, sc.NumFields())
			for j, f := range sc.Fields() {
				idx := rec.Schema().FieldIndices(f.Name)
				require.Len(t, idx, 1, "column %s in %s", f.Name, path)
				c := rec.Column(idx[0])
				if c.IsNull(i) {
					parts[j] = "NULL"
				} else {
					parts[j] = c.ValueStr(i)
				}
			}
			rows = append(rows, strings.Join(parts, "|"))
		}
		return nil
	}))
	return rows
}

// pick returns the rows at positions in (inSet) or not in (!inSet) set.
func pick(rows []string, set []uint64, inSet bool) []string {
	var out []string
	for i, r := range rows {
		if slices.Contains(set, uint64(i)) == inSet {
			out = append(out, r)
		}
	}
	return out
}

func dvRows(t *testing.T, dir string, d *dvDesc) []uint64 {
	if d == nil {
		return nil
	}
	return handDecode(t, dir, d)
}

// minus returns the positions in a and not in b.
func minus(a, b []uint64) []uint64 {
	var out []uint64
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// expectedSnapshot is the table at version v from the log, the Parquet
// files and the deletion vectors: the surviving rows, sorted.
func expectedSnapshot(t *testing.T, dir string, log [][]logAction, v int, sc *arrow.Schema) []string {
	var out []string
	for _, f := range activeFiles(log, v) {
		rows := parquetRows(t, filepath.Join(dir, f.Path), sc)
		require.Len(t, rows, int(f.numRecords(t)), "numRecords of %s", f.Path)
		out = append(out, pick(rows, dvRows(t, dir, f.DV), false)...)
	}
	sort.Strings(out)
	return out
}

func withWeight(rows []string, w string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r + "|" + w
	}
	return out
}

// expectedChanges is what following version v must emit, sorted: for a
// path removed and added (its deletion vector replaced), −1 for the rows
// the new vector deletes and the old did not (+1 for the reverse); for
// other removes, −1 for the rows still live; for other adds, +1 for
// the rows not deleted. Actions with dataChange false change nothing.
func expectedChanges(t *testing.T, dir string, log [][]logAction, v int, sc *arrow.Schema) []string {
	adds, removes := map[string]*logFile{}, map[string]*logFile{}
	for _, a := range log[v] {
		if a.Add != nil && a.Add.dataChange() {
			adds[a.Add.Path] = a.Add
		}
		if a.Remove != nil && a.Remove.dataChange() {
			removes[a.Remove.Path] = a.Remove
		}
	}
	var out []string
	for p, add := range adds {
		rows := parquetRows(t, filepath.Join(dir, p), sc)
		newDV := dvRows(t, dir, add.DV)
		if rm := removes[p]; rm != nil {
			oldDV := dvRows(t, dir, rm.DV)
			out = append(out, withWeight(pick(rows, minus(newDV, oldDV), true), "-1")...)
			out = append(out, withWeight(pick(rows, minus(oldDV, newDV), true), "+1")...)
			continue
		}
		out = append(out, withWeight(pick(rows, newDV, false), "+1")...)
	}
	for p, rm := range removes {
		if adds[p] == nil {
			out = append(out, withWeight(pick(parquetRows(t, filepath.Join(dir, p), sc), dvRows(t, dir, rm.DV), false), "-1")...)
		}
	}
	sort.Strings(out)
	return out
}

var dvTables = []struct {
	name string
	sc   *arrow.Schema
}{
	{"delta/table_with_deletion_logs", fixture.Schema("address VARCHAR", "age DOUBLE", "company VARCHAR", "id BIGINT", "name VARCHAR", "nbr BIGINT", "phone_number VARCHAR")},
	{"delta/cdf-table-with-cdc-and-dvs", fixture.Schema("id INT", "comment VARCHAR")},
}

// TestDeletionVectorFiles decodes every deletion vector of the shared
// tables by hand and compares it with delta.ReadDeletionVector's.
func TestDeletionVectorFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range dvTables {
		dir := fixture.Shared(t, tc.name)
		st, err := dlog.OpenStorage(ctx, dir, s3.Settings{})
		require.NoError(t, err)
		seen := 0
		for v, actions := range readJSONLog(t, dir) {
			for _, a := range actions {
				for _, f := range []*logFile{a.Add, a.Remove} {
					if f == nil || f.DV == nil {
						continue
					}
					want := handDecode(t, dir, f.DV)
					require.NotEmpty(t, want)
					d := &dlog.DeletionVector{StorageType: f.DV.StorageType, PathOrInlineDv: f.DV.PathOrInlineDv,
						Offset: f.DV.Offset, SizeInBytes: f.DV.SizeInBytes, Cardinality: f.DV.Cardinality}
					got, err := dlog.ReadDeletionVector(ctx, st, d)
					require.NoError(t, err, "%s version %d", tc.name, v)
					require.Equal(t, want, got.ToArray(), "%s version %d %s", tc.name, v, f.Path)
					seen++
				}
			}
		}
		require.NotZero(t, seen, "%s has deletion vectors", tc.name)
	}
}

// TestDeletionVectorSnapshots reads every version of the shared tables
// that have deletion vectors: the row count is Σ numRecords − Σ
// cardinality from the JSON log, and the rows are those of the Parquet
// files minus the positions the vectors delete.
func TestDeletionVectorSnapshots(t *testing.T) {
	for _, tc := range dvTables {
		dir := fixture.Shared(t, tc.name)
		log := readJSONLog(t, dir)
		for v := range log {
			t.Run(fmt.Sprintf("%s v%d", tc.name, v), func(t *testing.T) {
				count := derivedCount(t, activeFiles(log, v))
				want := expectedSnapshot(t, dir, log, v, tc.sc)
				require.Len(t, want, int(count))
				d := read(t, cfg(dir, fmt.Sprintf(`"mode": "snapshot", "version": %d`, v)), tc.sc, nil, 0)
				require.True(t, d.EndOfInput)
				require.Equal(t, count, d.Hash.Count)
				require.Equal(t, want, table(t, d.Rows))
				t.Logf("%s version %d: %d rows", tc.name, v, count)
			})
		}
	}
}

// TestDeletionVectorFollow follows the shared tables commit by commit: a
// commit that replaces a file's deletion vector deletes exactly the
// newly deleted rows (and re-emits none of the others), and following
// every commit from version 0 sums to the latest snapshot's count and
// rows.
func TestDeletionVectorFollow(t *testing.T) {
	for _, tc := range dvTables {
		dir := fixture.Shared(t, tc.name)
		log := readJSONLog(t, dir)
		last := len(log) - 1
		replaced := 0
		for v := range log {
			want := expectedChanges(t, dir, log, v, tc.sc)
			d := read(t, cfg(dir, fmt.Sprintf(`"mode": "follow", "start_version": %d, "end_version": %d`, v, v)), tc.sc, nil, 0)
			require.True(t, d.EndOfInput)
			got := slices.Clone(d.Rows)
			sort.Strings(got)
			require.Equal(t, want, got, "%s version %d", tc.name, v)
			for _, a := range log[v] {
				if a.Add != nil && a.Add.DV != nil && a.Add.dataChange() {
					replaced++
				}
			}
		}
		require.NotZero(t, replaced, "%s has commits that add deletion vectors", tc.name)

		all := read(t, cfg(dir, fmt.Sprintf(`"mode": "follow", "start_version": 0, "end_version": %d`, last)), tc.sc, nil, 0)
		require.Equal(t, derivedCount(t, activeFiles(log, last)), all.Hash.Count, tc.name)
		require.Equal(t, expectedSnapshot(t, dir, log, last, tc.sc), table(t, all.Rows), tc.name)
	}
}

// TestDeletionVectorResume stops snapshot_and_follow after every record
// and resumes from the checkpoint, inside files with deletion vectors
// and inside the changes that replace them: no row is skipped or
// repeated.
func TestDeletionVectorResume(t *testing.T) {
	for _, tc := range []struct {
		table     string
		sc        *arrow.Schema
		from, end int
	}{
		{"delta/table_with_deletion_logs", dvTables[0].sc, 3, 5}, // snapshot with a vector, then a commit replacing it
		{"delta/cdf-table-with-cdc-and-dvs", dvTables[1].sc, 2, 25},
	} {
		dir := fixture.Shared(t, tc.table)
		c := cfg(dir, fmt.Sprintf(`"mode": "snapshot_and_follow", "version": %d, "end_version": %d`, tc.from, tc.end))
		whole := read(t, c, tc.sc, nil, 0)
		got := fixture.ReadInSteps(t, delta.New, connectors.Params{Config: json.RawMessage(c), Schema: tc.sc, BatchSize: 3}, 1, true)
		require.Equal(t, whole.Rows, got.Rows, tc.table)
		log := readJSONLog(t, dir)
		require.Equal(t, expectedSnapshot(t, dir, log, tc.end, tc.sc), table(t, got.Rows), tc.table)
	}
}

// serializeDV returns a RoaringBitmapArray of rows: the magic number,
// then the portable 64-bit format as the roaring library writes it.
func serializeDV(t *testing.T, rows ...uint64) []byte {
	b, err := roaring64.BitmapOf(rows...).ToBytes()
	require.NoError(t, err)
	return append(binary.LittleEndian.AppendUint32(nil, 1681511377), b...)
}

// inlineDV is the descriptor JSON of an inline vector of rows.
func inlineDV(t *testing.T, rows ...uint64) string {
	data := serializeDV(t, rows...)
	padded := append(slices.Clone(data), make([]byte, (4-len(data)%4)%4)...)
	return fmt.Sprintf(`{"storageType":"i","pathOrInlineDv":%q,"sizeInBytes":%d,"cardinality":%d}`, z85Encode(padded), len(data), len(rows))
}

// dvFile writes a deletion vector file (format version 1) holding the
// given vectors one after another, and returns each one's offset and
// size.
func dvFile(t *testing.T, path string, vectors ...[]byte) (offsets, sizes []int) {
	buf := []byte{1}
	for _, v := range vectors {
		offsets = append(offsets, len(buf))
		sizes = append(sizes, len(v))
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
		buf = binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(v))
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, buf, 0o644))
	return offsets, sizes
}

// writeParquetGroups writes ids as a Parquet file with row groups of
// groupRows rows.
func writeParquetGroups(t *testing.T, path string, groupRows int64, ids ...int64) {
	rec := fixture.Int64s("id", ids...)
	defer rec.Release()
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(groupRows)), pqarrow.DefaultWriterProps())
	require.NoError(t, err)
	require.NoError(t, w.Write(rec))
	require.NoError(t, w.Close())
}

// dvTestTable writes a table in a temporary directory whose one data
// file (ids 0..9 in row groups of 3 rows) gets its deletion vector
// replaced commit by commit, in every storage type:
//
//	v0 add, no vector                      10 rows
//	v1 vector inline {2,5}                  8 rows
//	v2 vector "u" with a random prefix,
//	   second in its file {2,5,7}           7 rows
//	v3 vector "p" (absolute) {2,3,5,7,9}    5 rows
//	v4 back to inline {2} (add first)       9 rows
//	v5 remove                               0 rows
func dvTestTable(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "_delta_log"), 0o755))
	writeParquetGroups(t, filepath.Join(dir, "part-0.parquet"), 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)

	uuid := []byte{0xd2, 0xc6, 0x39, 0xaa, 0x88, 0x16, 0x43, 0x1a, 0xaa, 0xf6, 0xd3, 0xfe, 0x25, 0x12, 0xff, 0x61}
	off, size := dvFile(t, filepath.Join(dir, "ab", "deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"),
		serializeDV(t, 1, 2, 3), serializeDV(t, 2, 5, 7))
	dvU := fmt.Sprintf(`{"storageType":"u","pathOrInlineDv":%q,"offset":%d,"sizeInBytes":%d,"cardinality":3}`, "ab"+z85Encode(uuid), off[1], size[1])
	abs := filepath.Join(t.TempDir(), "elsewhere", "dv.bin")
	off, size = dvFile(t, abs, serializeDV(t, 2, 3, 5, 7, 9))
	dvP := fmt.Sprintf(`{"storageType":"p","pathOrInlineDv":%q,"offset":%d,"sizeInBytes":%d,"cardinality":5}`, "file://"+filepath.ToSlash(abs), off[0], size[0])
	dvI1, dvI2 := inlineDV(t, 2, 5), inlineDV(t, 2)

	file := func(kind, dv string) string {
		if dv != "" {
			dv = `,"deletionVector":` + dv
		}
		if kind == "add" {
			return `{"add":{"path":"part-0.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":10}"` + dv + `}}`
		}
		return `{"remove":{"path":"part-0.parquet","deletionTimestamp":1,"dataChange":true` + dv + `}}`
	}
	schemaString, _ := json.Marshal(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}`)
	commits := []string{
		`{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}
{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":` + string(schemaString) + `,"partitionColumns":[],"configuration":{"delta.enableDeletionVectors":"true"},"createdTime":1}}
` + file("add", ""),
		file("remove", "") + "\n" + file("add", dvI1),
		file("remove", dvI1) + "\n" + file("add", dvU),
		file("remove", dvU) + "\n" + file("add", dvP),
		file("add", dvI2) + "\n" + file("remove", dvP),
		file("remove", dvI2),
	}
	for v, c := range commits {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", v)), []byte(c+"\n"), 0o644))
	}
	return dir
}

// TestDeletionVectorStorageTypes reads the table dvTestTable writes:
// inline, relative and absolute vectors, rows counted across row groups.
func TestDeletionVectorStorageTypes(t *testing.T) {
	dir := dvTestTable(t)
	sc := fixture.Schema("id BIGINT")
	log := readJSONLog(t, dir)
	ids := func(rows ...int) []string {
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprint(r))
		}
		sort.Strings(out)
		return out
	}
	for v, want := range [][]string{
		ids(0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
		ids(0, 1, 3, 4, 6, 7, 8, 9),
		ids(0, 1, 3, 4, 6, 8, 9),
		ids(0, 1, 4, 6, 8),
		ids(0, 1, 3, 4, 5, 6, 7, 8, 9),
		nil,
	} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			snap := read(t, cfg(dir, fmt.Sprintf(`"mode": "snapshot", "version": %d`, v)), sc, nil, 0)
			require.Equal(t, want, table(t, snap.Rows))
			require.Equal(t, derivedCount(t, activeFiles(log, v)), int64(len(want)))
			require.Equal(t, expectedSnapshot(t, dir, log, v, sc), table(t, snap.Rows))

			follow := read(t, cfg(dir, fmt.Sprintf(`"mode": "follow", "start_version": %d, "end_version": %d`, v, v)), sc, nil, 0)
			got := slices.Clone(follow.Rows)
			sort.Strings(got)
			require.Equal(t, expectedChanges(t, dir, log, v, sc), got)
		})
	}
	follow := read(t, cfg(dir, `"mode": "follow", "start_version": 0, "end_version": 3`), sc, nil, 0)
	sort.Strings(follow.Rows)
	require.Equal(t, []string{
		"0|+1", "1|+1", "2|+1", "2|-1", "3|+1", "3|-1", "4|+1", "5|+1", "5|-1", "6|+1", "7|+1", "7|-1", "8|+1", "9|+1", "9|-1",
	}, follow.Rows)

	c := cfg(dir, `"mode": "snapshot_and_follow", "version": 1, "end_version": 5`)
	whole := read(t, c, sc, nil, 0)
	got := fixture.ReadInSteps(t, delta.New, connectors.Params{Config: json.RawMessage(c), Schema: sc, BatchSize: 2}, 1, true)
	require.Equal(t, whole.Rows, got.Rows)
	require.Empty(t, table(t, got.Rows))
}

// TestDeletionVectorErrors: a vector that does not check out is a fatal
// error naming its file, not rows read wrong.
func TestDeletionVectorErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := dlog.OpenStorage(ctx, dir, s3.Settings{})
	require.NoError(t, err)
	uuid := z85Encode([]byte{0xd2, 0xc6, 0x39, 0xaa, 0x88, 0x16, 0x43, 0x1a, 0xaa, 0xf6, 0xd3, 0xfe, 0x25, 0x12, 0xff, 0x61})
	name := "deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
	off, size := dvFile(t, filepath.Join(dir, name), serializeDV(t, 4, 1<<33))
	one := int32(off[0])
	good := dlog.DeletionVector{StorageType: "u", PathOrInlineDv: uuid, Offset: &one, SizeInBytes: int32(size[0]), Cardinality: 2}
	bm, err := dlog.ReadDeletionVector(ctx, st, &good)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 1 << 33}, bm.ToArray())

	for _, tc := range []struct {
		name string
		edit func(d *dlog.DeletionVector)
		file func(b []byte)
		want string
	}{
		{"cardinality", func(d *dlog.DeletionVector) { d.Cardinality = 3 }, nil, "holds 2 rows, but its descriptor's cardinality is 3"},
		{"size", func(d *dlog.DeletionVector) { d.SizeInBytes-- }, nil, "size field"},
		{"checksum", nil, func(b []byte) { b[len(b)-6] ^= 0x40 }, "CRC-32"},
		{"magic", nil, func(b []byte) {
			b[5] ^= 1
			binary.BigEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[5:len(b)-4]))
		}, "magic number"},
		{"version", nil, func(b []byte) { b[0] = 2 }, "format version 2"},
		{"missing", func(d *dlog.DeletionVector) { d.PathOrInlineDv = "zz" + d.PathOrInlineDv }, nil, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := good
			if tc.edit != nil {
				tc.edit(&d)
			}
			if tc.file != nil {
				b, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				tc.file(b)
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
				defer dvFile(t, filepath.Join(dir, name), serializeDV(t, 4, 1<<33))
			}
			_, err := dlog.ReadDeletionVector(ctx, st, &d)
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, "deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestDeletionVectorS3 reads the latest version of the shared tables
// from an S3 bucket (gofakes3 over HTTP): the deletion vector files are
// read with range requests beside the data files.
func TestDeletionVectorS3(t *testing.T) {
	srv := fixture.NewS3(t)
	for i, tc := range dvTables {
		dir := fixture.Shared(t, tc.name)
		prefix := fmt.Sprintf("tables/t%d", i)
		srv.PutDir(t, "lake", prefix, dir)
		log := readJSONLog(t, dir)
		d := read(t, fmt.Sprintf(`{"uri": "s3://lake/%s", "mode": "snapshot", %s}`, prefix, srv.Config()), tc.sc, nil, 0)
		require.Equal(t, expectedSnapshot(t, dir, log, len(log)-1, tc.sc), table(t, d.Rows), tc.name)
	}
}

// TestDeletionVectorReplacedByBareRemove follows a commit that replaces
// a file's vector with a remove that omits the descriptor (the active
// file, PROTOCOL.md "Action Reconciliation" as Snapshot.Apply reads it)
// and an add with the new vector: only the newly deleted row is
// deleted. The add may name the path percent-encoded: it still pairs
// with the remove of the decoded path.
func TestDeletionVectorReplacedByBareRemove(t *testing.T) {
	for _, addPath := range []string{"part-0.parquet", "part%2D0.parquet"} {
		t.Run(addPath, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "_delta_log"), 0o755))
			writeParquetGroups(t, filepath.Join(dir, "part-0.parquet"), 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
			v1, v2 := []uint64{2, 5}, []uint64{2, 5, 7}
			add := func(path string, rows []uint64) string {
				dv := ""
				if rows != nil {
					dv = `,"deletionVector":` + inlineDV(t, rows...)
				}
				return `{"add":{"path":"` + path + `","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":10}"` + dv + `}}`
			}
			bareRemove := `{"remove":{"path":"part-0.parquet","deletionTimestamp":1,"dataChange":true}}`
			schemaString, _ := json.Marshal(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}`)
			commits := []string{
				`{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}
{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":` + string(schemaString) + `,"partitionColumns":[],"configuration":{},"createdTime":1}}
` + add("part-0.parquet", nil),
				bareRemove + "\n" + add("part-0.parquet", v1),
				bareRemove + "\n" + add(addPath, v2),
			}
			for v, c := range commits {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", v)), []byte(c+"\n"), 0o644))
			}
			sc := fixture.Schema("id BIGINT")

			// Derived here: the file's rows read with pqarrow, the
			// vectors decoded by hand; the bare remove of version 2
			// stands for the file active after version 1, with v1.
			rows := parquetRows(t, filepath.Join(dir, "part-0.parquet"), sc)
			log := readJSONLog(t, dir)
			oldDV := dvRows(t, dir, log[1][1].Add.DV)
			newDV := dvRows(t, dir, log[2][1].Add.DV)
			require.Equal(t, v1, oldDV)
			require.Equal(t, v2, newDV)
			wantSnap := pick(rows, newDV, false)
			sort.Strings(wantSnap)
			wantV2 := append(withWeight(pick(rows, minus(newDV, oldDV), true), "-1"), withWeight(pick(rows, minus(oldDV, newDV), true), "+1")...)
			sort.Strings(wantV2)
			require.Equal(t, []string{"7|-1"}, wantV2)

			snap := read(t, cfg(dir, `"mode": "snapshot", "version": 2`), sc, nil, 0)
			require.Equal(t, wantSnap, table(t, snap.Rows))

			one := read(t, cfg(dir, `"mode": "follow", "start_version": 2, "end_version": 2`), sc, nil, 0)
			got := slices.Clone(one.Rows)
			sort.Strings(got)
			require.Equal(t, wantV2, got, "version 2 deletes only the newly deleted row")

			all := read(t, cfg(dir, `"mode": "follow", "start_version": 0, "end_version": 2`), sc, nil, 0)
			require.Equal(t, int64(len(wantSnap)), all.Hash.Count)
			require.Equal(t, wantSnap, table(t, all.Rows))
		})
	}
}
