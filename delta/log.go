package delta

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/connectors"
)

// Action is one line of a commit, or one row of a checkpoint: exactly one
// field is set (PROTOCOL.md, "Actions"). Unknown actions and fields are
// ignored on reading.
type Action struct {
	Add            *File           `json:"add,omitempty"`
	Remove         *File           `json:"remove,omitempty"`
	MetaData       *Metadata       `json:"metaData,omitempty"`
	Protocol       *Protocol       `json:"protocol,omitempty"`
	Txn            *Txn            `json:"txn,omitempty"`
	DomainMetadata *DomainMetadata `json:"domainMetadata,omitempty"`
	CommitInfo     *CommitInfo     `json:"commitInfo,omitempty"`
}

// File is an add or a remove action: both name a data file by its path,
// a URI relative to the table root (PROTOCOL.md, "Add File and Remove
// File").
type File struct {
	Path            string          `json:"path"`
	PartitionValues PartitionValues `json:"partitionValues"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// ModificationTime (add) is when the file was written, in ms since
	// the epoch.
	ModificationTime int64 `json:"modificationTime,omitempty"`
	// DeletionTimestamp (remove) is when the file was removed, in ms
	// since the epoch; VACUUM deletes it once that is older than the
	// table's delta.deletedFileRetentionDuration.
	DeletionTimestamp int64 `json:"deletionTimestamp,omitempty"`
	// DataChange is false for rewrites (compaction, OPTIMIZE) that do not
	// change the table's rows. Absent reads as true.
	DataChange *bool `json:"dataChange"`
	// Stats is a JSON object: numRecords, minValues, maxValues, nullCount.
	Stats string `json:"stats,omitempty"`
	// DeletionVector, when set, names the rows of the data file that are
	// deleted (PROTOCOL.md, "Deletion Vectors"). The logical file is the
	// pair (path, DeletionVector.UniqueID()).
	DeletionVector *DeletionVector `json:"deletionVector,omitempty"`
	// ExtendedFileMetadata says a remove carries partitionValues and size.
	ExtendedFileMetadata bool `json:"extendedFileMetadata,omitempty"`
}

// Metadata is the table's metaData action.
type Metadata struct {
	// ID is the table's unique id (a UUID).
	ID               string    `json:"id"`
	Name             string    `json:"name,omitempty"`
	Format           Format    `json:"format"`
	SchemaString     string    `json:"schemaString"`
	PartitionColumns []string  `json:"partitionColumns"`
	Configuration    StringMap `json:"configuration"`
	CreatedTime      int64     `json:"createdTime,omitempty"`
}

// Format is the data files' format: always Parquet.
type Format struct {
	Provider string    `json:"provider"`
	Options  StringMap `json:"options"`
}

// Protocol is the protocol action: the reader and writer versions and,
// from versions 3 and 7, the table features they need.
type Protocol struct {
	MinReaderVersion int      `json:"minReaderVersion"`
	MinWriterVersion int      `json:"minWriterVersion"`
	ReaderFeatures   []string `json:"readerFeatures,omitempty"`
	WriterFeatures   []string `json:"writerFeatures,omitempty"`
}

// Txn is a set-transaction action: the newest version an application
// (AppID) committed, which makes its writes idempotent (PROTOCOL.md,
// "Transaction Identifiers").
type Txn struct {
	AppID       string `json:"appId"`
	Version     int64  `json:"version"`
	LastUpdated int64  `json:"lastUpdated,omitempty"`
}

// DomainMetadata is a named configuration string kept in the table's
// snapshot, the newest per domain winning (PROTOCOL.md, "Domain
// Metadata"); Removed deletes the domain.
type DomainMetadata struct {
	Domain        string `json:"domain"`
	Configuration string `json:"configuration"`
	Removed       bool   `json:"removed"`
}

// CommitInfo is free-form provenance; these fields are the ones read.
type CommitInfo struct {
	Timestamp         int64          `json:"timestamp,omitempty"`
	InCommitTimestamp int64          `json:"inCommitTimestamp,omitempty"`
	Operation         string         `json:"operation,omitempty"`
	OperationParams   map[string]any `json:"operationParameters,omitempty"`
	EngineInfo        string         `json:"engineInfo,omitempty"`
	IsBlindAppend     *bool          `json:"isBlindAppend,omitempty"`
}

// DataChanged reports whether an add or remove changes the table's rows:
// OPTIMIZE, compaction and other rewrites set dataChange false.
func (a *File) DataChanged() bool { return a.DataChange == nil || *a.DataChange }

// FilePath returns the path relative to the table root. Paths in the log
// are URIs: percent-encoded, and absolute ones are not supported.
func (a *File) FilePath() (string, error) {
	p, err := url.PathUnescape(a.Path)
	if err != nil {
		return "", fmt.Errorf("file path %q: %w", a.Path, err)
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("file path %q: absolute paths (shallow clones) are not supported", a.Path)
	}
	return p, nil
}

// DV returns the file's deletion vector, or nil when it has none.
func (a *File) DV() *DeletionVector {
	if !a.DeletionVector.IsSet() {
		return nil
	}
	return a.DeletionVector
}

// DVID is the file's deletion vector's unique id, "" without one: with
// the path, the key of the logical file (PROTOCOL.md, "Action
// Reconciliation").
func (a *File) DVID() string { return a.DeletionVector.UniqueID() }

// NumRecords returns the file's row count from its stats, or -1.
func (a *File) NumRecords() int64 {
	var s struct {
		NumRecords *int64 `json:"numRecords"`
	}
	if a.Stats == "" || json.Unmarshal([]byte(a.Stats), &s) != nil || s.NumRecords == nil {
		return -1
	}
	return *s.NumRecords
}

// PartitionValues is a file's partition values by (physical) column name;
// nil is SQL NULL. JSON commits write an object; Parquet checkpoints a
// map, which Arrow renders as [{"key": k, "value": v}, ...].
type PartitionValues map[string]*string

// StringMap is a string map written either way, as PartitionValues.
type StringMap map[string]string

// UnmarshalJSON reads an object or Arrow's list of key-value pairs.
func (m *StringMap) UnmarshalJSON(b []byte) error {
	var pv PartitionValues
	if err := pv.UnmarshalJSON(b); err != nil {
		return err
	}
	*m = StringMap{}
	for k, v := range pv {
		if v != nil {
			(*m)[k] = *v
		}
	}
	return nil
}

// MarshalJSON writes an object; nil is {}.
func (m StringMap) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]string(m))
}

// UnmarshalJSON reads an object or Arrow's list of key-value pairs.
func (p *PartitionValues) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		var kvs []struct {
			Key   string  `json:"key"`
			Value *string `json:"value"`
		}
		if err := json.Unmarshal(b, &kvs); err != nil {
			return err
		}
		*p = PartitionValues{}
		for _, kv := range kvs {
			(*p)[kv.Key] = kv.Value
		}
		return nil
	}
	return json.Unmarshal(b, (*map[string]*string)(p))
}

// MarshalJSON writes an object; nil is {} (add requires the field).
func (p PartitionValues) MarshalJSON() ([]byte, error) {
	if p == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]*string(p))
}

// supportedReaderFeatures are the table features (protocol reader version
// 3) Sluice reads correctly.
var supportedReaderFeatures = map[string]bool{
	"columnMapping":       true,
	"deletionVectors":     true, // ReadDeletionVector; readers drop the rows
	"timestampNtz":        true,
	"vacuumProtocolCheck": true, // only constrains VACUUM
}

// Check refuses a protocol that needs what Sluice does not read.
func (p *Protocol) Check() error {
	switch {
	case p == nil:
		return errors.New("the log has no protocol action")
	case p.MinReaderVersion > 3:
		return fmt.Errorf("the table requires Delta reader version %d; Sluice reads versions 1 to 3", p.MinReaderVersion)
	case p.MinReaderVersion == 3:
		var missing []string
		for _, f := range p.ReaderFeatures {
			if !supportedReaderFeatures[f] {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the table requires reader features that Sluice does not support: %s", strings.Join(missing, ", "))
		}
	}
	return nil
}

var (
	commitName     = regexp.MustCompile(`^(\d{20})\.json$`)
	checkpointName = regexp.MustCompile(`^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$`)
)

// LogDir is the log's directory under the table root.
const LogDir = "_delta_log"

// CommitFile is the path of version v's commit, relative to the table root.
func CommitFile(v int64) string { return fmt.Sprintf("%s/%020d.json", LogDir, v) }

// checkpointFile is the path of version v's single-part checkpoint.
func checkpointFile(v int64) string { return fmt.Sprintf("%s/%020d.checkpoint.parquet", LogDir, v) }

const lastCheckpointFile = LogDir + "/_last_checkpoint"

// logListing is what a listing of _delta_log found.
type logListing struct {
	commits     map[int64]time.Time // version -> the commit file's modification time
	checkpoints map[int64][]string  // version -> complete checkpoint parts, in order
	latest      int64               // newest commit or checkpoint version; -1 if none
}

// listLog lists _delta_log, starting at version from (0: everything).
func listLog(ctx context.Context, st Storage, from int64) (*logListing, error) {
	startAfter := ""
	if from > 0 {
		startAfter = fmt.Sprintf("%020d", from-1) + "~" // sorts after every name of version from-1
	}
	es, err := st.List(ctx, LogDir, startAfter)
	if err != nil {
		return nil, err
	}
	l := &logListing{commits: map[int64]time.Time{}, checkpoints: map[int64][]string{}, latest: -1}
	parts := map[int64]map[int][]string{} // version -> part count -> names
	for _, e := range es {
		if m := commitName.FindStringSubmatch(e.Name); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			l.commits[v] = e.ModTime
			l.latest = max(l.latest, v)
		} else if m := checkpointName.FindStringSubmatch(e.Name); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			n := 1
			if m[3] != "" {
				n, _ = strconv.Atoi(m[3])
			}
			if parts[v] == nil {
				parts[v] = map[int][]string{}
			}
			parts[v][n] = append(parts[v][n], LogDir+"/"+e.Name)
		}
		// Anything else (.crc sidecars, .tmp/, _commits/, v2 checkpoints,
		// log compactions) is not needed to read the table.
	}
	for v, byCount := range parts {
		for n, names := range byCount {
			if len(names) == n { // a complete (possibly multi-part) checkpoint
				sort.Strings(names)
				l.checkpoints[v] = names
				l.latest = max(l.latest, v)
			}
		}
	}
	return l, nil
}

// lastCheckpointHint is _delta_log/_last_checkpoint.
type lastCheckpointHint struct {
	Version int64 `json:"version"`
	Size    int64 `json:"size"`
	Parts   int   `json:"parts,omitempty"`
}

// readLastCheckpoint reads _delta_log/_last_checkpoint; Version is -1 if
// the file is missing or unreadable (a torn or foreign hint: the log is
// read from its start instead).
func readLastCheckpoint(ctx context.Context, st Storage) (lastCheckpointHint, error) {
	b, err := st.ReadFile(ctx, lastCheckpointFile)
	if errors.Is(err, fs.ErrNotExist) {
		return lastCheckpointHint{Version: -1}, nil
	}
	if err != nil {
		return lastCheckpointHint{Version: -1}, err
	}
	var lc lastCheckpointHint
	if err := json.Unmarshal(b, &lc); err != nil {
		return lastCheckpointHint{Version: -1}, nil
	}
	return lc, nil
}

// LastCheckpointVersion returns the version _delta_log/_last_checkpoint
// names, or -1.
func LastCheckpointVersion(ctx context.Context, st Storage) (int64, error) {
	lc, err := readLastCheckpoint(ctx, st)
	return lc.Version, err
}

// ReadCommit parses the actions of commit version v; fs.ErrNotExist when
// it has not been written (yet).
func ReadCommit(ctx context.Context, st Storage, v int64) ([]Action, error) {
	b, err := st.ReadFile(ctx, CommitFile(v))
	if err != nil {
		return nil, err
	}
	return parseCommit(CommitFile(v), b)
}

func parseCommit(name string, b []byte) ([]Action, error) {
	var out []Action
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var a Action
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, connectors.Fatal(fmt.Errorf("%s line %d: %w", name, line, err))
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// readCheckpoint reads the actions of a Parquet checkpoint part. Each row
// holds one action in one of its struct columns; rendered as JSON by
// Arrow, a row has the shape of a commit line. Only the top-level
// columns in only are read (nil: all).
func readCheckpoint(ctx context.Context, st Storage, name string, only map[string]bool) ([]Action, error) {
	f, err := st.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 14}, memory.DefaultAllocator)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
	}
	var leaves []int // nil: all
	if only != nil {
		sc := pf.MetaData().Schema
		leaves = []int{}
		for i := range sc.NumColumns() {
			if only[sc.Column(i).ColumnPath()[0]] {
				leaves = append(leaves, i)
			}
		}
		if len(leaves) == 0 {
			return nil, nil
		}
	}
	rr, err := fr.GetRecordReader(ctx, leaves, nil)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
	}
	defer rr.Release()
	var out []Action
	var buf bytes.Buffer
	for rr.Next() {
		rec := rr.RecordBatch()
		if only != nil { // most rows are other actions: keep those with a read column set
			if rec, err = nonNullRows(ctx, rec); err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", name, err)
			}
		}
		buf.Reset()
		err := array.RecordToJSON(rec, &buf)
		if only != nil {
			rec.Release()
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", name, err)
		}
		dec := json.NewDecoder(&buf)
		for dec.More() {
			var a Action
			if err := dec.Decode(&a); err != nil {
				return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
			}
			out = append(out, a)
		}
	}
	return out, rr.Err()
}

// nonNullRows returns the rows of rec where some column is not null; the
// caller releases the result.
func nonNullRows(ctx context.Context, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	b := array.NewBooleanBuilder(memory.DefaultAllocator)
	defer b.Release()
	n := int(rec.NumRows())
	b.Reserve(n)
	for i := range n {
		valid := false
		for _, c := range rec.Columns() {
			if c.IsValid(i) {
				valid = true
				break
			}
		}
		b.UnsafeAppend(valid)
	}
	mask := b.NewArray()
	defer mask.Release()
	return compute.FilterRecordBatch(ctx, rec, mask, compute.DefaultFilterOptions())
}

// Snapshot is the table's state at one version: what replaying the log
// up to it yields (PROTOCOL.md, "Action Reconciliation").
type Snapshot struct {
	Version  int64
	Protocol *Protocol
	Metadata *Metadata
	// Files are the active data files, by decoded path; a path is active
	// with at most one deletion vector.
	Files map[string]*File
	// Tombstones are the removed files, by decoded path, that a checkpoint
	// keeps until they expire (delta.deletedFileRetentionDuration). No
	// path is in both Files and Tombstones.
	Tombstones map[string]*File
	// Txns is the newest version of each application id.
	Txns map[string]int64
	// Domains are the domain metadata, by domain.
	Domains map[string]string
	// TombstonesFrom names the checkpoint parts whose remove actions were
	// not read (LoadLatest skips them); Tombstones then holds only the
	// removes of the commits after it. [Snapshot.LoadTombstones] reads
	// them.
	TombstonesFrom []string
}

// Clone returns a copy whose maps can change independently; the actions
// they point to are shared and never modified.
func (s *Snapshot) Clone() *Snapshot {
	c := *s
	c.Files, c.Tombstones = maps.Clone(s.Files), maps.Clone(s.Tombstones)
	c.Txns, c.Domains = maps.Clone(s.Txns), maps.Clone(s.Domains)
	return &c
}

// LoadTombstones reads the remove actions LoadLatest skipped, keeping
// those of paths not active again (with any deletion vector) and not
// removed again since.
func (s *Snapshot) LoadTombstones(ctx context.Context, st Storage) error {
	for _, part := range s.TombstonesFrom {
		actions, err := readCheckpoint(ctx, st, part, map[string]bool{"remove": true})
		if err != nil {
			return err
		}
		for _, a := range actions {
			if a.Remove == nil {
				continue
			}
			p, err := a.Remove.FilePath()
			if err != nil {
				return err
			}
			if s.Files[p] == nil && s.Tombstones[p] == nil {
				s.Tombstones[p] = a.Remove
			}
		}
	}
	s.TombstonesFrom = nil
	return nil
}

// NewSnapshot returns the empty state before version 0.
func NewSnapshot() *Snapshot {
	return &Snapshot{Version: -1, Files: map[string]*File{}, Tombstones: map[string]*File{}, Txns: map[string]int64{}, Domains: map[string]string{}}
}

// Apply applies one commit's (or checkpoint's) actions. A logical file
// is the pair (path, deletion vector id) (PROTOCOL.md, "Action
// Reconciliation"): a remove takes away the active file of its path only
// if its deletion vector is the same, so a commit that removes a file
// with its old deletion vector and adds it with a new one leaves the new
// one active, in either order. Files and Tombstones hold one entry per
// path, and never the same path: a path active again (with any deletion
// vector) is not a tombstone, so that nothing deletes a live data file
// by the path of its replaced logical file.
// A remove without a deletion vector of a path that is active with one
// and not added again in the same actions removes it: writers that omit
// the descriptor from remove actions mean the file.
func (s *Snapshot) Apply(actions []Action) error { return s.apply(actions, false) }

// apply applies a commit's actions, or a checkpoint part's: a
// checkpoint is already reconciled, so its removes are tombstones only
// (and its parts may hold a file's add and an older remove of its path
// apart).
func (s *Snapshot) apply(actions []Action, checkpoint bool) error {
	var added map[string]bool // paths added in actions, built on first need
	for _, a := range actions {
		switch {
		case a.Protocol != nil:
			s.Protocol = a.Protocol
		case a.MetaData != nil:
			s.Metadata = a.MetaData
		case a.Add != nil:
			p, err := a.Add.FilePath()
			if err != nil {
				return err
			}
			s.Files[p] = a.Add
			delete(s.Tombstones, p) // active again, whatever vector the remove had
		case a.Remove != nil:
			p, err := a.Remove.FilePath()
			if err != nil {
				return err
			}
			f := s.Files[p]
			if checkpoint {
				f = nil
			}
			if f != nil && f.DVID() != a.Remove.DVID() && a.Remove.DV() == nil {
				if added == nil {
					added = addedPaths(actions)
				}
				if !added[p] {
					f = &File{} // the descriptor-less remove matches
				}
			}
			if f != nil && f.DVID() == a.Remove.DVID() {
				delete(s.Files, p)
			}
			if s.Files[p] == nil { // a path still active is no tombstone
				s.Tombstones[p] = a.Remove
			}
		case a.Txn != nil:
			s.Txns[a.Txn.AppID] = a.Txn.Version
		case a.DomainMetadata != nil:
			if a.DomainMetadata.Removed {
				delete(s.Domains, a.DomainMetadata.Domain)
			} else {
				s.Domains[a.DomainMetadata.Domain] = a.DomainMetadata.Configuration
			}
		}
	}
	return nil
}

// addedPaths returns the decoded paths of the add actions.
func addedPaths(actions []Action) map[string]bool {
	out := map[string]bool{}
	for _, a := range actions {
		if a.Add != nil {
			if p, err := a.Add.FilePath(); err == nil {
				out[p] = true
			}
		}
	}
	return out
}

// validate checks the state is a readable table.
func (s *Snapshot) validate(st Storage) error {
	if err := s.Protocol.Check(); err != nil {
		return connectors.Fatal(fmt.Errorf("%s: %w", st, err))
	}
	if s.Metadata == nil {
		return connectors.Fatal(fmt.Errorf("%s: the log has no metaData action", st))
	}
	return nil
}

// LoadSnapshot replays the log up to version (-1: the newest): the
// newest complete checkpoint at or before it, then every JSON commit
// after it. A missing commit is a fatal error.
func LoadSnapshot(ctx context.Context, st Storage, version int64) (*Snapshot, error) {
	lc, err := readLastCheckpoint(ctx, st)
	if err != nil {
		return nil, err
	}
	from := int64(0)
	if lc.Version >= 0 && (version < 0 || lc.Version <= version) {
		from = lc.Version
	}
	l, err := listLog(ctx, st, from)
	if err != nil {
		return nil, err
	}
	if from > 0 && len(l.checkpoints[from]) == 0 { // a stale hint: list everything
		if l, err = listLog(ctx, st, 0); err != nil {
			return nil, err
		}
	}
	if l.latest < 0 {
		return nil, connectors.Fatal(fmt.Errorf("%s is not a Delta table: %s/ holds no commits", st, LogDir))
	}
	if version < 0 {
		version = l.latest
	}
	if version > l.latest {
		return nil, connectors.Fatal(fmt.Errorf("%s has no version %d (newest: %d)", st, version, l.latest))
	}
	cp := int64(-1)
	for v := range l.checkpoints {
		if v <= version && v > cp {
			cp = v
		}
	}
	s := NewSnapshot()
	if cp >= 0 {
		if err := s.loadCheckpoint(ctx, st, cp, l.checkpoints[cp], nil); err != nil {
			return nil, err
		}
	}
	for v := cp + 1; v <= version; v++ {
		actions, err := ReadCommit(ctx, st, v)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, connectors.Fatal(fmt.Errorf("%s: version %d cannot be read: commit %d is missing and no checkpoint covers it", st, version, v))
		}
		if err != nil {
			return nil, err
		}
		if err := s.Apply(actions); err != nil {
			return nil, connectors.Fatal(err)
		}
		s.Version = v
	}
	if err := s.validate(st); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Snapshot) loadCheckpoint(ctx context.Context, st Storage, v int64, parts []string, only map[string]bool) error {
	for _, part := range parts {
		actions, err := readCheckpoint(ctx, st, part, only)
		if err != nil {
			return err
		}
		if err := s.apply(actions, true); err != nil {
			return connectors.Fatal(err)
		}
	}
	s.Version = v
	return nil
}

// LoadLatest returns the newest snapshot without listing the log: the
// checkpoint _last_checkpoint names, then the commits after it, read one
// by one until the next is missing. Its cost depends on the commits since
// the last checkpoint and the active files, not on the table's age:
// tables that Sluice writes keep _last_checkpoint current, and the
// checkpoint's remove actions (tombstones, which pile up until their
// retention expires) are left for [Snapshot.LoadTombstones]. It returns
// (nil, nil) for a location without commits.
func LoadLatest(ctx context.Context, st Storage) (*Snapshot, error) {
	lc, err := readLastCheckpoint(ctx, st)
	if err != nil {
		return nil, err
	}
	s := NewSnapshot()
	if lc.Version >= 0 {
		// Part by part, so that a hint's part count costs nothing
		// beyond the parts that are there.
		var parts []string
		live := map[string]bool{"txn": true, "add": true, "metaData": true, "protocol": true, "domainMetadata": true}
		for i := 1; i <= max(lc.Parts, 1); i++ {
			part := checkpointFile(lc.Version)
			if lc.Parts > 1 {
				part = fmt.Sprintf("%s/%020d.checkpoint.%010d.%010d.parquet", LogDir, lc.Version, i, lc.Parts)
			}
			if err := s.loadCheckpoint(ctx, st, lc.Version, []string{part}, live); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					return nil, err
				}
				return LoadSnapshot(ctx, st, -1) // the hint names a checkpoint that is gone
			}
			parts = append(parts, part)
		}
		s.TombstonesFrom = parts
	}
	if _, err := s.CatchUp(ctx, st); err != nil {
		return nil, err
	}
	if s.Version < 0 {
		return nil, nil
	}
	if err := s.validate(st); err != nil {
		return nil, err
	}
	return s, nil
}

// CatchUp applies the commits after s.Version until the next one is
// missing, and returns how many it applied.
func (s *Snapshot) CatchUp(ctx context.Context, st Storage) (int, error) {
	n := 0
	for {
		actions, err := ReadCommit(ctx, st, s.Version+1)
		if errors.Is(err, fs.ErrNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if err := s.Apply(actions); err != nil {
			return n, connectors.Fatal(err)
		}
		s.Version++
		n++
	}
}

// VersionAt returns the newest version committed at or before t: the
// commit's inCommitTimestamp, else commitInfo.timestamp, else the commit
// file's modification time (PROTOCOL.md, "Commit Provenance" and
// "In-Commit Timestamps").
func VersionAt(ctx context.Context, st Storage, t time.Time) (int64, error) {
	l, err := listLog(ctx, st, 0)
	if err != nil {
		return 0, err
	}
	versions := make([]int64, 0, len(l.commits))
	for v := range l.commits {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	found := int64(-1)
	for _, v := range versions {
		ts := l.commits[v]
		actions, err := ReadCommit(ctx, st, v)
		if err != nil {
			return 0, err
		}
		for _, a := range actions {
			if a.CommitInfo != nil {
				if a.CommitInfo.InCommitTimestamp > 0 {
					ts = time.UnixMilli(a.CommitInfo.InCommitTimestamp)
				} else if a.CommitInfo.Timestamp > 0 {
					ts = time.UnixMilli(a.CommitInfo.Timestamp)
				}
			}
		}
		if ts.After(t) {
			break
		}
		found = v
	}
	if found < 0 {
		return 0, connectors.Fatal(fmt.Errorf("%s has no version committed at or before %s", st, t.Format(time.RFC3339)))
	}
	return found, nil
}

// Latest returns the table's newest version, listing the log from the
// last checkpoint; a location without commits is a fatal error.
func Latest(ctx context.Context, st Storage) (int64, error) {
	lc, err := readLastCheckpoint(ctx, st)
	if err != nil {
		return 0, err
	}
	l, err := listLog(ctx, st, max(lc.Version, 0))
	if err == nil && l.latest < 0 && lc.Version > 0 {
		l, err = listLog(ctx, st, 0)
	}
	if err != nil {
		return 0, err
	}
	if l.latest < 0 {
		return 0, connectors.Fatal(fmt.Errorf("%s is not a Delta table: %s/ holds no commits", st, LogDir))
	}
	return l.latest, nil
}
