// Package store is the table store: every Sluice table is a Delta Lake
// table (https://github.com/delta-io/delta/blob/master/PROTOCOL.md) at
// <root>/<pipeline>/<table>/, on a local disk or under s3://bucket/prefix,
// that Spark, DuckDB's delta_scan, Polars, Trino or Databricks read with
// snapshot isolation.
//
// Version 0 holds the protocol and the metaData: the table's columns plus
// the long column _weight (+1 insert, -1 delete), a table id, no
// partitioning. Each input connector's commit is one version holding its
// data file, a txn action {appId: "<table>.<connector>", version: <the
// connector's commit number>} and the domain metadata
// "sluice.connector.<connector>", whose configuration is the connector's
// checkpoint, counters and epoch. Domain metadata is part of the
// snapshot (the newest per domain wins, and checkpoints keep it), so a
// resuming connector finds its position by reading the last log
// checkpoint and the commits after it, never the whole log; commitInfo,
// the other place the protocol allows free-form data, is not.
//
// Commits are put-if-absent ([delta.Storage.PutIfAbsent]). A writer that
// loses a version reads the versions it missed and retries at the next
// one, unless they hold its own appId at or past its commit number: then
// another attempt of the same connector committed that number, and the
// epochs (the activity attempt's start time) decide which attempt is
// stale ([ErrFenced]) and which must resume from the table
// ([ErrSuperseded]). Either way nothing is stored twice.
//
// Every Options.CheckpointInterval versions the committer writes a
// Parquet log checkpoint and _last_checkpoint. When the table has
// Options.CompactMinFiles data files smaller than Options.TargetFileSize,
// the committer merges files of similar size into one in a dataChange:
// false version (Delta's OPTIMIZE, tiered by size so that a row is
// rewritten a few times, not at every compaction); files it removed are
// deleted once they have been removed for Options.Retention
// (delta.deletedFileRetentionDuration). Both run in the background, off
// the commit path: [Table.Flush] waits for them, [Table.Close] stops them.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
)

// Errors of [Table.Commit] and [Open].
var (
	// ErrFenced means a newer attempt of the same connector committed this
	// commit number: this writer is a stale attempt (a zombie activity)
	// and must stop without committing. The newer attempt is unharmed.
	ErrFenced = errors.New("store: a newer attempt of this connector committed first (this attempt is stale)")
	// ErrSuperseded means an older attempt of the same connector committed
	// this commit number after this writer resumed: the table holds that
	// attempt's records, so this writer must resume from the table's
	// checkpoint (retrying the activity does).
	ErrSuperseded = errors.New("store: an older attempt of this connector committed after this one resumed")
	// ErrNotFound means no table exists at the location.
	ErrNotFound = errors.New("store: no table")
)

// Defaults of [Options].
const (
	DefaultCheckpointInterval = 100
	DefaultCompactMinFiles    = 50
	DefaultTargetFileSize     = 128 << 20
	DefaultRetention          = 7 * 24 * time.Hour
)

// Options tune the table store. Zero values take the defaults.
type Options struct {
	// CheckpointInterval is the versions between log checkpoints
	// (delta.checkpointInterval); default 100.
	CheckpointInterval int
	// CompactMinFiles is how many small data files trigger a compaction
	// (as Databricks' autoCompact.minNumFiles); default 50; negative
	// turns compaction off.
	CompactMinFiles int
	// TargetFileSize is the size (bytes) below which a data file is
	// small (delta.targetFileSize); default 128 MiB.
	TargetFileSize int64
	// Retention is how long a file removed by compaction stays on disk
	// for readers of older versions
	// (delta.deletedFileRetentionDuration); default 7 days.
	Retention time.Duration
	// S3 are the settings for s3:// roots.
	S3 s3.Settings
	// Allocator for record batches; memory.DefaultAllocator if nil.
	Allocator memory.Allocator
}

func (o Options) withDefaults() Options {
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.CompactMinFiles == 0 {
		o.CompactMinFiles = DefaultCompactMinFiles
	}
	if o.TargetFileSize <= 0 {
		o.TargetFileSize = DefaultTargetFileSize
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
	return o
}

// Location is a table's URI under root (a directory or s3://bucket/prefix):
// <root>/<pipeline>/<table>. Local roots are made absolute, so that the
// location names one place whatever the worker's working directory.
func Location(root, pipelineName, table string) string {
	if u, err := url.Parse(root); err == nil && u.Scheme == "s3" {
		return strings.TrimSuffix(root, "/") + "/" + pipelineName + "/" + table
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return filepath.Join(root, pipelineName, table)
}

// Table is one open table. Its methods may be called concurrently; one
// Table per writer keeps writers of different processes independent.
type Table struct {
	st       delta.Storage
	location string
	opts     Options

	mu   sync.Mutex
	snap *delta.Snapshot // the newest state this Table has seen
	m    maintenance
}

// Create opens the table at location, creating its version 0 with the
// change schema (schema plus _weight) if it has no commits. Concurrent
// creators agree on one table: version 0 is put-if-absent.
func Create(ctx context.Context, location, name string, schema *arrow.Schema, o Options) (*Table, error) {
	t, err := open(ctx, location, o)
	if err != nil {
		return nil, err
	}
	if t.snap != nil {
		return t, nil
	}
	change := pipeline.WithWeight(schema)
	ss, err := delta.SchemaString(change)
	if err != nil {
		return nil, err
	}
	proto := &delta.Protocol{MinReaderVersion: 1, MinWriterVersion: 7, WriterFeatures: []string{"domainMetadata"}}
	for _, f := range schema.Fields() {
		if tt, ok := f.Type.(*arrow.TimestampType); ok && tt.TimeZone == "" {
			proto = &delta.Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
				ReaderFeatures: []string{"timestampNtz"}, WriterFeatures: []string{"domainMetadata", "timestampNtz"}}
			break
		}
	}
	now := time.Now().UnixMilli()
	o = t.opts
	md := &delta.Metadata{
		ID: uuid.NewString(), Name: name, Format: delta.Format{Provider: "parquet", Options: delta.StringMap{}},
		SchemaString: ss, PartitionColumns: []string{}, CreatedTime: now,
		Configuration: delta.StringMap{
			"delta.checkpointInterval":           strconv.Itoa(o.CheckpointInterval),
			"delta.deletedFileRetentionDuration": fmt.Sprintf("interval %d seconds", int64(o.Retention/time.Second)),
		},
	}
	actions := []delta.Action{{Protocol: proto}, {MetaData: md}, {CommitInfo: &delta.CommitInfo{Timestamp: now, Operation: "CREATE TABLE", EngineInfo: engine}}}
	err = delta.WriteCommit(ctx, t.st, 0, actions)
	if err != nil && !errors.Is(err, delta.ErrExist) {
		return nil, fmt.Errorf("store: create %s: %w", location, err)
	}
	// Created here or by a concurrent creator: read what won.
	return Open(ctx, location, o)
}

// engine is commitInfo.engineInfo.
const engine = "Sluice"

// Open opens the table at location; [ErrNotFound] if it has no commits.
func Open(ctx context.Context, location string, o Options) (*Table, error) {
	t, err := open(ctx, location, o)
	if err != nil {
		return nil, err
	}
	if t.snap == nil {
		return nil, fmt.Errorf("%w at %s", ErrNotFound, location)
	}
	return t, nil
}

func open(ctx context.Context, location string, o Options) (*Table, error) {
	o = o.withDefaults()
	st, err := delta.NewStorage(ctx, location, o.S3)
	if err != nil {
		return nil, err
	}
	snap, err := delta.LoadLatest(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", location, err)
	}
	if snap != nil {
		if err := refuseDeletionVectors(location, snap); err != nil {
			return nil, err
		}
	}
	return &Table{st: st, location: location, opts: o, snap: snap}, nil
}

// deletionVectors is the Delta table feature of deletion vectors.
const deletionVectors = "deletionVectors"

// refuseDeletionVectors is the store's one rule about deletion vectors:
// it reads, compacts, vacuums and removes data files whole, so a table
// whose protocol has the deletionVectors feature, or with a data file
// (active or removed) that has a deletion vector, is refused rather
// than read with its deleted rows back. delta_table_input reads such
// tables; the table store never writes them.
func refuseDeletionVectors(location string, snap *delta.Snapshot) error {
	if err := refuseDVActions(location, delta.Action{Protocol: snap.Protocol}); err != nil {
		return err
	}
	for _, files := range []map[string]*delta.File{snap.Files, snap.Tombstones} {
		for _, f := range files {
			if err := refuseDVActions(location, delta.Action{Add: f}); err != nil {
				return err
			}
		}
	}
	return nil
}

// refuseDVActions applies [refuseDeletionVectors]'s rule to the protocol,
// add and remove actions of a commit.
func refuseDVActions(location string, actions ...delta.Action) error {
	for _, a := range actions {
		if p := a.Protocol; p != nil && (slices.Contains(p.ReaderFeatures, deletionVectors) || slices.Contains(p.WriterFeatures, deletionVectors)) {
			return fmt.Errorf("store: %s: the table's protocol has the table feature %s, which the table store does not support", location, deletionVectors)
		}
		for _, f := range []*delta.File{a.Add, a.Remove} {
			if f != nil && f.DV() != nil {
				return fmt.Errorf("store: %s: data file %s has a deletion vector (%s), which the table store does not support", location, f.Path, f.DV())
			}
		}
	}
	return nil
}

// ID returns the table's id (metaData.id).
func (t *Table) ID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap.Metadata.ID
}

// Location returns the table's URI.
func (t *Table) Location() string { return t.location }

// Storage returns where the table lives.
func (t *Table) Storage() delta.Storage { return t.st }

// Version returns the newest version this Table has seen.
func (t *Table) Version() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap.Version
}

// AppID is the txn application id of a connector's commits:
// "<table>.<connector>".
func AppID(table, connector string) string { return table + "." + connector }

// Domain is the domain metadata holding a connector's state:
// "sluice.connector.<connector>".
func Domain(connector string) string { return "sluice.connector." + connector }

// State is what the table holds of one connector.
type State struct {
	// Commit is the connector's newest commit number (its txn version);
	// 0 before its first commit.
	Commit int64 `json:"commit"`
	// Epoch orders the connector's writers: the activity attempt's start
	// time in ns since the epoch.
	Epoch int64 `json:"epoch"`
	// Time is when that commit was made.
	Time time.Time `json:"time"`
	// Progress is the writer's progress at that commit (the Ingest
	// activity's checkpoint and counters), opaque here.
	Progress json.RawMessage `json:"progress,omitempty"`
}

// Refresh reads the versions committed since this Table last looked.
// When a newer log checkpoint exists, it starts from that instead of
// reading every commit.
func (t *Table) Refresh(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refresh(ctx)
}

func (t *Table) refresh(ctx context.Context) error {
	if ok, err := t.nextExists(ctx); err != nil || !ok {
		return err
	}
	// Far behind (a writer idle while others committed): start from the
	// newest log checkpoint rather than reading every commit since.
	if cp, err := delta.LastCheckpointVersion(ctx, t.st); err == nil && cp > t.snap.Version+int64(t.opts.CheckpointInterval) {
		snap, err := delta.LoadLatest(ctx, t.st)
		if err != nil {
			return fmt.Errorf("store: %s: %w", t.location, err)
		}
		if err := refuseDeletionVectors(t.location, snap); err != nil {
			return err
		}
		t.snap = snap
		return nil
	}
	// On a copy, so that versions the store refuses never become the
	// state this Table writes, compacts and vacuums from.
	snap := t.snap.Clone()
	if _, err := snap.CatchUp(ctx, t.st); err != nil {
		return fmt.Errorf("store: %s: %w", t.location, err)
	}
	if err := refuseDeletionVectors(t.location, snap); err != nil {
		return err
	}
	t.snap = snap
	return nil
}

// nextExists reports whether a version after the snapshot exists.
func (t *Table) nextExists(ctx context.Context) (bool, error) {
	f, err := t.st.Open(ctx, delta.CommitFile(t.snap.Version+1))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f.Close()
	return true, nil
}

// Connector returns what the table holds of a connector as of the newest
// version, reading the versions committed since the Table last looked.
func (t *Table) Connector(ctx context.Context, table, connector string) (State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(ctx); err != nil {
		return State{}, err
	}
	return t.state(table, connector)
}

func (t *Table) state(table, connector string) (State, error) {
	var s State
	if cfg, ok := t.snap.Domains[Domain(connector)]; ok {
		if err := json.Unmarshal([]byte(cfg), &s); err != nil {
			return s, fmt.Errorf("store: %s: domain %s: %w", t.location, Domain(connector), err)
		}
	}
	s.Commit = t.snap.Txns[AppID(table, connector)]
	return s, nil
}

// Commit is one connector commit: its records and its new state.
type Commit struct {
	// Table and Connector name the writer (its appId and domain).
	Table, Connector string
	// Number is the connector's commit number: its previous commit's + 1.
	Number int64
	// Epoch is the writer's epoch (see [State]).
	Epoch int64
	// Progress is stored as the connector's state.
	Progress json.RawMessage
	// Records are in the table's change schema; empty commits the
	// progress alone.
	Records []arrow.RecordBatch
	// Schema is the change schema.
	Schema *arrow.Schema
}

// Result says what a commit did.
type Result struct {
	// Version is the table version the commit became.
	Version int64
	// Rows is the records it added.
	Rows int64
}

// Commit writes c's records as a data file and commits it with the
// connector's txn and state as the next version. It fails with
// [ErrFenced] or [ErrSuperseded] when another attempt of the connector
// committed c.Number; the data file it wrote is then deleted. After the
// commit it writes a log checkpoint when the version is a multiple of
// the checkpoint interval, and compacts small files when there are
// enough; neither changes the commit's outcome.
func (t *Table) Commit(ctx context.Context, c Commit) (Result, error) {
	var res Result
	now := time.Now()
	actions := make([]delta.Action, 0, 4)
	var dataFile string
	if rows(c.Records) > 0 {
		dataFile = newDataFile()
		add, n, err := delta.WriteParquet(ctx, t.st, dataFile, t.opts.Allocator, c.Schema, c.Records, true)
		if err != nil {
			return res, fmt.Errorf("store: write %s: %w", dataFile, err)
		}
		actions = append(actions, delta.Action{Add: add})
		res.Rows = n
	}
	state, _ := json.Marshal(State{Commit: c.Number, Epoch: c.Epoch, Time: now.UTC(), Progress: c.Progress})
	app := AppID(c.Table, c.Connector)
	actions = append(actions,
		delta.Action{Txn: &delta.Txn{AppID: app, Version: c.Number, LastUpdated: now.UnixMilli()}},
		delta.Action{DomainMetadata: &delta.DomainMetadata{Domain: Domain(c.Connector), Configuration: string(state)}},
		delta.Action{CommitInfo: &delta.CommitInfo{Timestamp: now.UnixMilli(), Operation: "STREAMING UPDATE", EngineInfo: engine,
			OperationParams: map[string]any{"connector": c.Connector, "commit": c.Number}}},
	)
	fail := func(err error) (Result, error) {
		if dataFile != "" {
			t.st.Delete(context.WithoutCancel(ctx), dataFile)
		}
		return res, err
	}
	if testHookPrepared != nil {
		testHookPrepared(c)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if err := t.refresh(ctx); err != nil {
			return fail(err)
		}
		prev, err := t.state(c.Table, c.Connector)
		if err != nil {
			return fail(err)
		}
		switch {
		case prev.Commit >= c.Number && prev.Epoch > c.Epoch:
			return fail(fmt.Errorf("%w: %s commit %d is in version %d", ErrFenced, app, prev.Commit, t.snap.Version))
		case prev.Commit >= c.Number:
			return fail(fmt.Errorf("%w: %s commit %d is in the table", ErrSuperseded, app, prev.Commit))
		case prev.Commit != c.Number-1:
			return fail(fmt.Errorf("store: %s: %s's newest commit is %d, but this writer's previous commit is %d", t.location, app, prev.Commit, c.Number-1))
		}
		v := t.snap.Version + 1
		err = delta.WriteCommit(ctx, t.st, v, actions)
		if errors.Is(err, delta.ErrExist) {
			continue // another writer took v: read it and try the next
		}
		if err != nil {
			// Unknown outcome (a timeout may hide a success), so the data
			// file stays: the activity's retry resumes from what the
			// table holds.
			return res, fmt.Errorf("store: commit %s version %d: %w", t.location, v, err)
		}
		if err := t.snap.Apply(actions); err != nil {
			return res, err
		}
		t.snap.Version = v
		res.Version = v
		break
	}
	t.committed(res.Version)
	return res, nil
}

// testHookPrepared runs between writing a commit's data file and
// committing it: tests slow a writer there.
var testHookPrepared func(Commit)

func rows(recs []arrow.RecordBatch) (n int64) {
	for _, r := range recs {
		if r != nil {
			n += r.NumRows()
		}
	}
	return n
}

func newDataFile() string { return "part-" + uuid.NewString() + ".snappy.parquet" }

// maintenance is a Table's background work: log checkpoints and
// compaction, off the commit path, one step at a time.
type maintenance struct {
	work           chan chan struct{} // nil: a kick; else closed when idle
	started        bool
	closed         bool
	wantCheckpoint bool
	// checkpointedLast says the last step wrote a checkpoint.
	checkpointedLast bool
	// stopped is closed when the maintenance goroutine has returned.
	stopped chan struct{}
	// life orders Flush's send before Close's close of work.
	life sync.RWMutex
}

// kick wakes the maintenance goroutine, starting it at first. Callers
// hold t.mu.
func (t *Table) kick() {
	if t.m.closed {
		return
	}
	if !t.m.started {
		t.m.started = true
		t.m.work = make(chan chan struct{}, 1)
		t.m.stopped = make(chan struct{})
		go t.maintainLoop(t.m.work, t.m.stopped)
	}
	select {
	case t.m.work <- nil:
	default: // already kicked
	}
}

// Flush waits until the background checkpoints and compactions that the
// commits so far asked for are done.
func (t *Table) Flush() {
	t.m.life.RLock() // Close waits for the send below
	t.mu.Lock()
	if !t.m.started || t.m.closed {
		t.mu.Unlock()
		t.m.life.RUnlock()
		return
	}
	d := make(chan struct{})
	work := t.m.work
	t.mu.Unlock()
	work <- d
	t.m.life.RUnlock()
	<-d
}

// Close stops the background work after its current step (a log
// checkpoint or one compaction; the rest that was asked for is left to
// the next writer) and waits for that step, so that nothing writes to
// the table's storage on its behalf once Close returns. Call Flush first
// to finish all of it. The Table must not be used afterwards.
func (t *Table) Close() error {
	t.m.life.Lock()
	t.mu.Lock()
	var stopped chan struct{}
	if !t.m.closed && t.m.started {
		close(t.m.work)
		stopped = t.m.stopped
	}
	t.m.closed = true
	t.mu.Unlock()
	t.m.life.Unlock()
	if stopped != nil {
		<-stopped
	}
	return nil
}

func (t *Table) maintainLoop(work chan chan struct{}, stopped chan struct{}) {
	defer close(stopped)
	ctx := context.Background()
	for d := range work {
		for !t.closing() && t.maintainStep(ctx) {
		}
		if d != nil {
			close(d)
		}
	}
}

// closing reports whether Close was called.
func (t *Table) closing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.closed
}

// maintainStep writes a wanted log checkpoint or runs one compaction,
// and reports whether it did something. Errors are not fatal: the next
// commit asks again.
func (t *Table) maintainStep(ctx context.Context) bool {
	t.mu.Lock()
	plan := t.compactionPlan()
	// Alternate, so that a writer committing faster than checkpoints are
	// written does not starve compaction (or the other way round).
	if t.m.wantCheckpoint && (len(plan) == 0 || !t.m.checkpointedLast) {
		t.m.wantCheckpoint, t.m.checkpointedLast = false, true
		snap := t.snap.Clone()
		t.mu.Unlock()
		t.checkpoint(ctx, snap)
		return true
	}
	t.m.checkpointedLast = false
	t.mu.Unlock()
	if len(plan) == 0 {
		return false
	}
	// A failed compaction waits for the next commit's kick rather than
	// retrying at once.
	return t.compact(ctx, plan) == nil
}

// committed notes a new version this Table committed.
func (t *Table) committed(v int64) {
	if v%int64(t.opts.CheckpointInterval) == 0 {
		t.m.wantCheckpoint = true
	}
	if t.m.wantCheckpoint || len(t.compactionPlan()) > 0 {
		t.kick()
	}
}

// checkpoint writes snap as the log checkpoint of its version, first
// vacuuming the files removed longer than Retention ago, and then drops
// them from the live state too.
func (t *Table) checkpoint(ctx context.Context, snap *delta.Snapshot) error {
	loadedFrom := snap.TombstonesFrom
	if err := snap.LoadTombstones(ctx, t.st); err != nil {
		return err
	}
	expired := time.Now().Add(-t.opts.Retention).UnixMilli()
	if held, ok, err := t.oldestHold(ctx); err != nil {
		expired = math.MinInt64 // holds unknown: vacuum nothing this time, still checkpoint
	} else if ok {
		expired = min(expired, held-holdSlack.Milliseconds())
	}
	var vacuumed []string
	for path, r := range snap.Tombstones {
		if snap.Files[path] != nil {
			// Active again (a replaced logical file): the data file is
			// live, never vacuumed, and the stale tombstone not kept.
			delete(snap.Tombstones, path)
			continue
		}
		if r.DeletionTimestamp < expired {
			if err := t.st.Delete(ctx, path); err != nil {
				return err
			}
			delete(snap.Tombstones, path)
			vacuumed = append(vacuumed, path)
		}
	}
	err := delta.WriteCheckpoint(ctx, t.st, snap)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range vacuumed {
		delete(t.snap.Tombstones, p)
	}
	if loadedFrom != nil && slices.Equal(t.snap.TombstonesFrom, loadedFrom) {
		// The live state lacks the older tombstones the clone loaded.
		for p, r := range snap.Tombstones {
			if t.snap.Files[p] == nil && t.snap.Tombstones[p] == nil {
				t.snap.Tombstones[p] = r
			}
		}
		t.snap.TombstonesFrom = nil
	}
	return err
}

// compactionFanout is how many files of one size tier are merged into one
// (CompactMinFiles/5, at least 2): tiers keep the rows' rewrites few.
func (t *Table) compactionFanout() int { return max(2, t.opts.CompactMinFiles/5) }

// tierBase is the size below which data files are in the first tier.
const tierBase = 64 << 10

// compactionPlan picks the files to merge, or none: once CompactMinFiles
// data files are smaller than TargetFileSize, the files of the lowest
// size tier (tier k holds sizes in [base*fanout^(k-1), base*fanout^k))
// that has fanout files, together with every smaller file, up to the
// target size. A file is thus rewritten about once per tier, not once
// per compaction (size-tiered compaction, as in LSM trees). Callers hold
// t.mu.
func (t *Table) compactionPlan() []*delta.File {
	if t.opts.CompactMinFiles <= 0 {
		return nil
	}
	var small []*delta.File
	for _, f := range t.snap.Files {
		if f.Size < t.opts.TargetFileSize {
			small = append(small, f)
		}
	}
	if len(small) < t.opts.CompactMinFiles {
		return nil
	}
	fanout := t.compactionFanout()
	tier := func(size int64) int {
		k := 0
		for b := int64(tierBase); size >= b; b *= int64(fanout) {
			k++
		}
		return k
	}
	sort.Slice(small, func(i, j int) bool {
		if small[i].Size != small[j].Size {
			return small[i].Size < small[j].Size
		}
		return small[i].Path < small[j].Path
	})
	counts := map[int]int{}
	top := -1
	for _, f := range small {
		k := tier(f.Size)
		if counts[k]++; counts[k] >= fanout && top < 0 {
			top = k
		}
	}
	var plan []*delta.File
	var size int64
	for _, f := range small {
		if (top >= 0 && tier(f.Size) > top) || (len(plan) >= 2 && size+f.Size > t.opts.TargetFileSize) {
			break
		}
		plan = append(plan, f)
		size += f.Size
	}
	if len(plan) < 2 {
		return nil
	}
	return plan
}

// compact merges plan's files into one in a dataChange: false version.
// It gives up (and deletes its file) if another writer removed one of
// them first.
func (t *Table) compact(ctx context.Context, plan []*delta.File) error {
	t.mu.Lock()
	schema, err := t.schema()
	t.mu.Unlock()
	if err != nil {
		return err
	}
	merged := newDataFile()
	enc, err := delta.NewEncoder(ctx, t.st, merged, t.opts.Allocator, schema)
	if err != nil {
		return err
	}
	for _, f := range plan {
		p, err := f.FilePath()
		if err == nil {
			err = t.readFile(ctx, p, schema, enc.Write)
		}
		if err != nil {
			enc.Abort()
			return err
		}
	}
	add, _, err := enc.Finish(false)
	if err != nil {
		return err
	}
	now := add.ModificationTime
	no := false
	actions := []delta.Action{{Add: add}}
	for _, f := range plan {
		actions = append(actions, delta.Action{Remove: &delta.File{Path: f.Path, PartitionValues: delta.PartitionValues{}, Size: f.Size,
			DeletionTimestamp: now, DataChange: &no, ExtendedFileMetadata: true}})
	}
	actions = append(actions, delta.Action{CommitInfo: &delta.CommitInfo{Timestamp: now, Operation: "OPTIMIZE", EngineInfo: engine,
		OperationParams: map[string]any{"auto": true, "files": len(plan)}}})
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if err := t.refresh(ctx); err != nil {
			return err
		}
		for _, f := range plan {
			p, _ := f.FilePath()
			if t.snap.Files[p] == nil {
				t.st.Delete(ctx, merged) // another compaction took it
				return nil
			}
		}
		v := t.snap.Version + 1
		err := delta.WriteCommit(ctx, t.st, v, actions)
		if errors.Is(err, delta.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := t.snap.Apply(actions); err != nil {
			return err
		}
		t.snap.Version = v
		if v%int64(t.opts.CheckpointInterval) == 0 {
			t.m.wantCheckpoint = true
		}
		return nil
	}
}

// CheckSchema reports whether the table holds the columns of schema (a
// table's columns, without _weight): the same names, Delta types and
// nullability, in order. A pipeline whose table changed since its Delta
// table was created gets an error naming both column lists.
func (t *Table) CheckSchema(schema *arrow.Schema) error {
	want, err := delta.SchemaString(pipeline.WithWeight(schema))
	if err != nil {
		return err
	}
	t.mu.Lock()
	have := t.snap.Metadata.SchemaString
	t.mu.Unlock()
	if want == have {
		return nil
	}
	cols := func(ss string) string {
		sc, err := delta.ArrowSchema(&delta.Metadata{SchemaString: ss})
		if err != nil {
			return err.Error()
		}
		var out []string
		for _, f := range sc.Fields() {
			typ, _ := delta.TypeName(f.Type)
			c := f.Name + " " + typ
			if !f.Nullable {
				c += " not null"
			}
			out = append(out, c)
		}
		return strings.Join(out, ", ")
	}
	return fmt.Errorf("the Delta table %s has the columns (%s), but the pipeline declares (%s)", t.location, cols(have), cols(want))
}

// schema returns the table's change schema as stored in its data files.
func (t *Table) schema() (*arrow.Schema, error) {
	return delta.ArrowSchema(t.snap.Metadata)
}

// readFile calls fn with each record batch of a data file; the batch is
// released after fn returns.
func (t *Table) readFile(ctx context.Context, path string, schema *arrow.Schema, fn func(arrow.RecordBatch) error) error {
	f, err := t.st.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	defer f.Close()
	r, err := file.NewParquetReader(f)
	if err != nil {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	defer r.Close()
	if r.NumRowGroups() == 0 {
		return nil
	}
	fr, err := pqarrow.NewFileReader(r, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, t.opts.Allocator)
	if err != nil {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	defer rr.Release()
	for rr.Next() {
		rec := rr.RecordBatch()
		if !rec.Schema().Equal(schema) { // the file's own field metadata aside
			rec = array.NewRecordBatch(schema, rec.Columns(), rec.NumRows())
			err = fn(rec)
			rec.Release()
		} else {
			err = fn(rec)
		}
		if err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	return nil
}

// Snapshot returns the newest version and its active data files in
// commit order (by modification time, then path).
func (t *Table) Snapshot(ctx context.Context) (int64, []*delta.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(ctx); err != nil {
		return 0, nil, err
	}
	files := make([]*delta.File, 0, len(t.snap.Files))
	for _, f := range t.snap.Files {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].ModificationTime != files[j].ModificationTime {
			return files[i].ModificationTime < files[j].ModificationTime
		}
		return files[i].Path < files[j].Path
	})
	return t.snap.Version, files, nil
}

// Scan calls fn with every record batch of the newest snapshot (each
// row with its weight: apply them for the table's rows). The batch is
// released after fn returns: retain it to keep it.
func (t *Table) Scan(ctx context.Context, fn func(arrow.RecordBatch) error) error {
	_, files, err := t.Snapshot(ctx)
	if err != nil {
		return err
	}
	return t.ScanFiles(ctx, files, fn)
}

// ScanFiles calls fn with every record batch of files (as [Table.Snapshot]
// returns them), file by file. It reads as it goes: when fn returns an
// error, ScanFiles returns it at once, without reading the rest of the
// file or the files after it. The batch is released after fn returns.
func (t *Table) ScanFiles(ctx context.Context, files []*delta.File, fn func(arrow.RecordBatch) error) error {
	schema, err := t.schema()
	if err != nil {
		return err
	}
	for _, f := range files {
		p, err := f.FilePath()
		if err != nil {
			return err
		}
		if err := t.readFile(ctx, p, schema, fn); err != nil {
			return err
		}
	}
	return nil
}

// InsertsOnly reports whether files (as [Table.Snapshot] returns them)
// hold inserts only, from their add actions' stats: every file's minimum
// _weight is at least 1. Then the table's rows are the files' rows, each
// weight times, and a reader may stream them without netting deletes. A
// file without that statistic counts as one that may hold deletes.
func InsertsOnly(files []*delta.File) bool {
	for _, f := range files {
		var s struct {
			MinValues map[string]json.RawMessage `json:"minValues"`
		}
		if f.Stats == "" || json.Unmarshal([]byte(f.Stats), &s) != nil {
			return false
		}
		var w int64
		if json.Unmarshal(s.MinValues[pipeline.WeightColumn], &w) != nil || w < 1 {
			return false
		}
	}
	return true
}

// Change locates a batch of the change stream.
type Change struct {
	// Version is the table version that committed it.
	Version int64
	// Connector wrote it ("" for a version without a connector).
	Connector string
	// Number is the connector's commit number.
	Number int64
	// Time is when it was committed (commitInfo.timestamp).
	Time time.Time
}

// commitOf reads a version's provenance from its commitInfo.
func commitOf(v int64, actions []delta.Action) Change {
	ch := Change{Version: v}
	for _, a := range actions {
		if ci := a.CommitInfo; ci != nil {
			ch.Time = time.UnixMilli(ci.Timestamp)
			if c, ok := ci.OperationParams["connector"].(string); ok {
				ch.Connector = c
			}
			if n, ok := ci.OperationParams["commit"].(float64); ok {
				ch.Number = int64(n)
			}
		}
	}
	return ch
}

// CommitRecord is a connector's commit as the log holds it.
type CommitRecord struct {
	Change
	// Rows is the records it added (from the add's stats).
	Rows int64
}

// Commits lists every connector commit, in version order. It reads the
// whole log: for tests and tools, not for a hot path.
func (t *Table) Commits(ctx context.Context) ([]CommitRecord, error) {
	var out []CommitRecord
	for v := int64(0); ; v++ {
		actions, err := delta.ReadCommit(ctx, t.st, v)
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		c := CommitRecord{Change: commitOf(v, actions)}
		if c.Connector == "" {
			continue
		}
		for _, a := range actions {
			if a.Add != nil && a.Add.DataChanged() {
				c.Rows += max(a.Add.NumRecords(), 0)
			}
		}
		out = append(out, c)
	}
}

// Changes calls fn with the records each version from..to (inclusive; to
// -1: the newest) added with dataChange true, in version order: the
// table's change stream. Compactions (dataChange false) add nothing to
// it. A data file removed and vacuumed before it was read is an error.
func (t *Table) Changes(ctx context.Context, from, to int64, fn func(Change, arrow.RecordBatch) error) error {
	schema, err := t.schema()
	if err != nil {
		return err
	}
	for v := from; to < 0 || v <= to; v++ {
		actions, err := delta.ReadCommit(ctx, t.st, v)
		if errors.Is(err, fs.ErrNotExist) {
			if to < 0 {
				return nil
			}
			return fmt.Errorf("store: %s: version %d does not exist", t.location, v)
		}
		if err != nil {
			return err
		}
		if err := refuseDVActions(t.location, actions...); err != nil {
			return err
		}
		ch := commitOf(v, actions)
		for _, a := range actions {
			if a.Add == nil || !a.Add.DataChanged() {
				continue
			}
			p, err := a.Add.FilePath()
			if err != nil {
				return err
			}
			if err := t.readFile(ctx, p, schema, func(rec arrow.RecordBatch) error { return fn(ch, rec) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// HoldsDir is the directory, in a table's root, where readers of its
// change stream (the Deliver activity's outputs) keep their holds: one
// JSON file per reader, {"version": V, "since_ms": T, "updated_ms": U}.
// Delta readers ignore it (a directory whose name starts with "_").
const HoldsDir = "_sluice/holds"

// HoldExpiry is how long a hold counts without being renewed: a reader
// removed from the pipeline, or paused longer than this, no longer holds
// files back.
const HoldExpiry = 30 * 24 * time.Hour

// holdSlack widens a hold for clock differences between the writers
// whose commit timestamps it compares.
const holdSlack = time.Hour

// hold is a reader's hold file.
type hold struct {
	Version int64 `json:"version"`
	Since   int64 `json:"since_ms"`
	Updated int64 `json:"updated_ms"`
}

// Hold records that reader (a name as pipeline.CheckName allows) has read
// the change stream up to version (-1: none) and will read the versions
// after it: until the hold is moved on or expires ([HoldExpiry]), vacuum
// keeps every file removed at a later version (removed after version's
// commit time, less an hour), even past Options.Retention. Without it a
// reader lagging more than the retention finds the files of the versions
// it has still to read deleted. Each call writes one small file; callers
// renew it now and then, not at every version.
func (t *Table) Hold(ctx context.Context, reader string, version int64) error {
	if err := pipeline.CheckName(reader); err != nil {
		return fmt.Errorf("store: hold: %w", err)
	}
	h := hold{Version: version, Updated: time.Now().UnixMilli()}
	if version >= 0 {
		actions, err := delta.ReadCommit(ctx, t.st, version)
		if err != nil {
			return fmt.Errorf("store: hold at version %d: %w", version, err)
		}
		h.Since = commitOf(version, actions).Time.UnixMilli()
	}
	b, _ := json.Marshal(h)
	return t.st.Put(ctx, HoldsDir+"/"+reader+".json", b)
}

// oldestHold returns the earliest commit time (ms) a live hold keeps
// files removed after, and whether there is one. A hold file that does
// not parse counts as a hold of everything (0) until it expires, by its
// modification time.
func (t *Table) oldestHold(ctx context.Context) (oldest int64, ok bool, err error) {
	entries, err := t.st.List(ctx, HoldsDir, "")
	if err != nil {
		return 0, false, err
	}
	live := time.Now().Add(-HoldExpiry).UnixMilli()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name, ".json") || strings.HasPrefix(e.Name, ".") {
			continue
		}
		b, err := t.st.ReadFile(ctx, HoldsDir+"/"+e.Name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		var h hold
		if json.Unmarshal(b, &h) != nil {
			h = hold{Updated: e.ModTime.UnixMilli()}
		}
		if h.Updated < live {
			continue
		}
		if !ok || h.Since < oldest {
			oldest, ok = h.Since, true
		}
	}
	return oldest, ok, nil
}

// String is the table's location.
func (t *Table) String() string { return t.location }

// Drop deletes the table at location: its data files, its log and the
// outputs' holds (Feldera's "clear storage" for one table). A missing
// table is not an error. Nothing else may use the table meanwhile; the
// positions outputs keep in their destinations are not touched.
func Drop(ctx context.Context, location string, o Options) error {
	if dir, ok := localDir(location); ok {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("store: drop %s: %w", location, err)
		}
		return nil
	}
	o = o.withDefaults()
	st, err := delta.NewStorage(ctx, location, o.S3)
	if err != nil {
		return fmt.Errorf("store: %s: %w", location, err)
	}
	// Data files and holds first, the log last: an interrupted drop
	// leaves a log whose files are missing, never files no log names.
	for _, dir := range []string{"", HoldsDir, delta.LogDir} {
		for {
			es, err := st.List(ctx, dir, "")
			if err != nil {
				return fmt.Errorf("store: drop %s: %w", location, err)
			}
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				name := e.Name
				if dir != "" {
					name = dir + "/" + e.Name
				}
				if err := st.Delete(ctx, name); err != nil {
					return fmt.Errorf("store: drop %s: %w", location, err)
				}
			}
		}
	}
	return nil
}

// localDir returns the directory of a local table location.
func localDir(location string) (string, bool) {
	u, err := url.Parse(location)
	if err == nil && u.Scheme == "s3" {
		return "", false
	}
	if err == nil && u.Scheme == "file" {
		return u.Path, true
	}
	return location, true
}
