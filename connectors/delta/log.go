package delta

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/connectors"
)

// The actions of the Delta protocol that a reader needs
// (PROTOCOL.md, "Actions"). Unknown fields are ignored.
type (
	action struct {
		Add        *addAction  `json:"add"`
		Remove     *addAction  `json:"remove"`
		MetaData   *metadata   `json:"metaData"`
		Protocol   *protocol   `json:"protocol"`
		CommitInfo *commitInfo `json:"commitInfo"`
	}
	// addAction is an add or a remove: both name a file by path.
	addAction struct {
		Path            string          `json:"path"`
		PartitionValues partitionValues `json:"partitionValues"`
		Size            int64           `json:"size"`
		DataChange      *bool           `json:"dataChange"`
		Stats           string          `json:"stats"`
		DeletionVector  json.RawMessage `json:"deletionVector"`
		// ExtendedFileMetadata says a remove carries partitionValues.
		ExtendedFileMetadata bool `json:"extendedFileMetadata"`
	}
	metadata struct {
		ID               string    `json:"id"`
		SchemaString     string    `json:"schemaString"`
		PartitionColumns []string  `json:"partitionColumns"`
		Configuration    stringMap `json:"configuration"`
	}
	protocol struct {
		MinReaderVersion int      `json:"minReaderVersion"`
		ReaderFeatures   []string `json:"readerFeatures"`
	}
	commitInfo struct {
		Timestamp         int64 `json:"timestamp"`
		InCommitTimestamp int64 `json:"inCommitTimestamp"`
	}
)

// dataChanged reports whether an add or remove changes the table's rows:
// OPTIMIZE and other rewrites set dataChange false.
func (a *addAction) dataChanged() bool { return a.DataChange == nil || *a.DataChange }

// filePath returns the path relative to the table root. Paths in the log
// are URIs: percent-encoded, and absolute ones are not supported.
func (a *addAction) filePath() (string, error) {
	p, err := url.PathUnescape(a.Path)
	if err != nil {
		return "", fmt.Errorf("file path %q: %w", a.Path, err)
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("file path %q: absolute paths (shallow clones) are not supported", a.Path)
	}
	return p, nil
}

// partitionValues is a file's partition values by (physical) column name;
// nil is SQL NULL. JSON commits write an object; Parquet checkpoints a
// map, which Arrow renders as [{"key": k, "value": v}, ...].
type partitionValues map[string]*string

// stringMap is a string map written either way, as partitionValues.
type stringMap map[string]string

func (m *stringMap) UnmarshalJSON(b []byte) error {
	var pv partitionValues
	if err := pv.UnmarshalJSON(b); err != nil {
		return err
	}
	*m = stringMap{}
	for k, v := range pv {
		if v != nil {
			(*m)[k] = *v
		}
	}
	return nil
}

func (p *partitionValues) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		var kvs []struct {
			Key   string  `json:"key"`
			Value *string `json:"value"`
		}
		if err := json.Unmarshal(b, &kvs); err != nil {
			return err
		}
		*p = partitionValues{}
		for _, kv := range kvs {
			(*p)[kv.Key] = kv.Value
		}
		return nil
	}
	return json.Unmarshal(b, (*map[string]*string)(p))
}

// supportedReaderFeatures are the table features (protocol reader version
// 3) Sluice reads correctly.
var supportedReaderFeatures = map[string]bool{
	"columnMapping":       true,
	"timestampNtz":        true,
	"vacuumProtocolCheck": true, // only constrains VACUUM
}

// check refuses a protocol that needs what Sluice does not implement.
func (p *protocol) check() error {
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

const logDir = "_delta_log"

func commitFile(v int64) string { return fmt.Sprintf("%s/%020d.json", logDir, v) }

// logListing is what a listing of _delta_log found.
type logListing struct {
	commits     map[int64]time.Time // version -> the commit file's modification time
	checkpoints map[int64][]string  // version -> complete checkpoint parts, in order
	latest      int64               // newest commit or checkpoint version; -1 if none
}

// listLog lists _delta_log, starting at version from (0: everything).
func listLog(ctx context.Context, st store, from int64) (*logListing, error) {
	startAfter := ""
	if from > 0 {
		startAfter = fmt.Sprintf("%020d", from-1) + "~" // sorts after every name of version from-1
	}
	es, err := st.list(ctx, logDir, startAfter)
	if err != nil {
		return nil, err
	}
	l := &logListing{commits: map[int64]time.Time{}, checkpoints: map[int64][]string{}, latest: -1}
	parts := map[int64]map[int][]string{} // version -> part count -> names
	for _, e := range es {
		if m := commitName.FindStringSubmatch(e.name); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			l.commits[v] = e.modTime
			l.latest = max(l.latest, v)
		} else if m := checkpointName.FindStringSubmatch(e.name); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			n := 1
			if m[3] != "" {
				n, _ = strconv.Atoi(m[3])
			}
			if parts[v] == nil {
				parts[v] = map[int][]string{}
			}
			parts[v][n] = append(parts[v][n], logDir+"/"+e.name)
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

// lastCheckpoint reads _delta_log/_last_checkpoint: the version of the
// newest checkpoint, or -1 if the file is missing.
func lastCheckpoint(ctx context.Context, st store) (int64, error) {
	b, err := st.readFile(ctx, logDir+"/_last_checkpoint")
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	var lc struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(b, &lc); err != nil {
		return -1, nil // a torn or foreign hint: list the whole log instead
	}
	return lc.Version, nil
}

// readCommit parses the actions of commit version v; fs.ErrNotExist when
// it has not been written (yet).
func readCommit(ctx context.Context, st store, v int64) ([]action, error) {
	b, err := st.readFile(ctx, commitFile(v))
	if err != nil {
		return nil, err
	}
	var out []action
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var a action
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, connectors.Fatal(fmt.Errorf("%s line %d: %w", commitFile(v), line, err))
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// readCheckpoint reads the actions of a Parquet checkpoint part. Each row
// holds one action in one of its struct columns; rendered as JSON by
// Arrow, a row has the shape of a commit line.
func readCheckpoint(ctx context.Context, st store, name string) ([]action, error) {
	f, err := st.open(ctx, name)
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
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
	}
	defer rr.Release()
	var out []action
	var buf bytes.Buffer
	for rr.Next() {
		buf.Reset()
		if err := array.RecordToJSON(rr.RecordBatch(), &buf); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", name, err)
		}
		dec := json.NewDecoder(&buf)
		for dec.More() {
			var a action
			if err := dec.Decode(&a); err != nil {
				return nil, connectors.Fatal(fmt.Errorf("checkpoint %s: %w", name, err))
			}
			out = append(out, a)
		}
	}
	return out, rr.Err()
}

// snapshot is the table's state at one version.
type snapshot struct {
	version  int64
	protocol *protocol
	metadata *metadata
	files    map[string]*addAction // by decoded path
}

// apply applies one commit's (or checkpoint's) actions.
func (s *snapshot) apply(actions []action) error {
	for _, a := range actions {
		switch {
		case a.Protocol != nil:
			s.protocol = a.Protocol
		case a.MetaData != nil:
			s.metadata = a.MetaData
		case a.Add != nil:
			p, err := a.Add.filePath()
			if err != nil {
				return err
			}
			s.files[p] = a.Add
		case a.Remove != nil:
			p, err := a.Remove.filePath()
			if err != nil {
				return err
			}
			delete(s.files, p)
		}
	}
	return nil
}

// loadSnapshot replays the log up to version (-1: the newest): the
// newest complete checkpoint at or before it, then every JSON commit
// after it. A missing commit is a fatal error.
func loadSnapshot(ctx context.Context, st store, version int64) (*snapshot, error) {
	lc, err := lastCheckpoint(ctx, st)
	if err != nil {
		return nil, err
	}
	from := int64(0)
	if lc >= 0 && (version < 0 || lc <= version) {
		from = lc
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
		return nil, connectors.Fatal(fmt.Errorf("%s is not a Delta table: %s/ holds no commits", st, logDir))
	}
	if version < 0 {
		version = l.latest
	}
	if version > l.latest {
		return nil, connectors.Fatal(fmt.Errorf("%s has no version %d (newest: %d)", st, version, l.latest))
	}
	s := &snapshot{version: version, files: map[string]*addAction{}}
	cp := int64(-1)
	for v := range l.checkpoints {
		if v <= version && v > cp {
			cp = v
		}
	}
	if cp >= 0 {
		for _, part := range l.checkpoints[cp] {
			actions, err := readCheckpoint(ctx, st, part)
			if err != nil {
				return nil, err
			}
			if err := s.apply(actions); err != nil {
				return nil, connectors.Fatal(err)
			}
		}
	}
	for v := cp + 1; v <= version; v++ {
		actions, err := readCommit(ctx, st, v)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, connectors.Fatal(fmt.Errorf("%s: version %d cannot be read: commit %d is missing and no checkpoint covers it", st, version, v))
		}
		if err != nil {
			return nil, err
		}
		if err := s.apply(actions); err != nil {
			return nil, connectors.Fatal(err)
		}
	}
	if err := s.protocol.check(); err != nil {
		return nil, connectors.Fatal(fmt.Errorf("%s: %w", st, err))
	}
	if s.metadata == nil {
		return nil, connectors.Fatal(fmt.Errorf("%s: the log has no metaData action", st))
	}
	return s, nil
}

// versionAt returns the newest version committed at or before t: the
// commit's inCommitTimestamp, else commitInfo.timestamp, else the commit
// file's modification time (PROTOCOL.md, "Commit Provenance" and
// "In-Commit Timestamps").
func versionAt(ctx context.Context, st store, t time.Time) (int64, error) {
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
		actions, err := readCommit(ctx, st, v)
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
