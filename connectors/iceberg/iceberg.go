package iceberg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/compute"
	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/rest" // registers catalog type rest
	_ "github.com/apache/iceberg-go/catalog/sql"  // registers catalog type sql (and the mysql driver)
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for SQL catalogs in PostgreSQL
	_ "modernc.org/sqlite"             // database/sql driver "sqlite", for SQL catalogs in SQLite

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/iceberg/icebergconfig"
	"github.com/sluicehq/sluice/connectors/predicate"
)

// PollInterval is how often the follow modes look for a new snapshot
// once every known one has been ingested.
var PollInterval = time.Second

// Phases of a [Checkpoint].
const (
	PhaseSnapshot = "snapshot"
	PhaseFollow   = "follow"
)

// Checkpoint is iceberg_input's position. In the snapshot phase (Phase
// "snapshot", or "" in checkpoints written before the follow modes),
// SnapshotID is the snapshot being read and File indexes its data files
// (sorted by path); in the follow phase, SnapshotID is the snapshot whose
// changes against its parent are being ingested and File indexes the data
// files those changes touch (sorted by path). Row is the rows of that
// file already read, counted in the file before any delete is applied,
// so a resumed connector neither skips nor re-reads a row. Done marks
// SnapshotID as read entirely: the next snapshot to follow is its child.
// Empty marks a table with no snapshot (yet).
type Checkpoint struct {
	Phase      string `json:"phase,omitempty"`
	SnapshotID int64  `json:"snapshot_id"`
	File       int    `json:"file"`
	Row        int64  `json:"row"`
	Done       bool   `json:"done,omitempty"`
	Empty      bool   `json:"empty,omitempty"`
}

// Source reads an Iceberg table: one snapshot, then (in the follow
// modes) the changes of each snapshot committed after it. Its methods
// are called from one goroutine; the caller releases each batch's
// record.
type Source struct {
	cfg    Config
	p      connectors.Params
	filter *predicate.Predicate

	fio     *fileIO
	cat     catalog.Catalog // loaded once, for catalog_type rest or sql
	tbl     *table.Table
	cp      Checkpoint
	units   []unit // data files of the checkpoint's snapshot or change
	planned bool   // units are those of s.cp's snapshot and phase
	ids     []int  // the Iceberg field id of each table column, 0 if none
	dels    *deleteCache
	// planCache is the snapshot planned last: following on, the parent
	// of the next snapshot.
	planCache struct {
		id    int64
		tasks map[string]*table.FileScanTask
	}
	cur *fileReader
}

// Config is iceberg_input's config (package icebergconfig).
type Config = icebergconfig.Config

// Modes of [Config.Mode] (Feldera's iceberg_input names).
const (
	ModeSnapshot          = icebergconfig.ModeSnapshot
	ModeFollow            = icebergconfig.ModeFollow
	ModeSnapshotAndFollow = icebergconfig.ModeSnapshotAndFollow
)

// New validates the config without I/O (icebergconfig.Check) and
// returns the source.
func New(p connectors.Params) (connectors.Source, error) {
	cfg, err := icebergconfig.Check(p)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: *cfg, p: p}
	if cfg.SnapshotFilter != "" {
		s.filter, _ = predicate.Parse(cfg.SnapshotFilter, p.Schema)
	}
	return s, nil
}

// Bounded reports whether the connector reaches end of input: in
// snapshot mode, and in the follow modes with end_snapshot_id.
func (s *Source) Bounded() bool { return s.cfg.Bounded() }

// load loads the table's metadata through the catalog or the metadata
// location. Missing tables and unreachable catalogs are fatal.
func (s *Source) load(ctx context.Context) error {
	if s.tbl != nil {
		return nil
	}
	s.fio = &fileIO{ctx: ctx, settings: s.cfg.Settings}
	return connectors.Fatal(s.loadTable(ctx))
}

// refresh reloads the table's metadata to see new snapshots. Errors are
// retryable: a catalog can be briefly unreachable.
func (s *Source) refresh(ctx context.Context) error {
	if err := s.loadTable(ctx); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	s.matchColumns()
	return nil
}

// loadTable (re)loads the table's metadata into s.tbl.
func (s *Source) loadTable(ctx context.Context) error {
	fsys := func(context.Context) (icebergio.IO, error) { return s.fio, nil }
	var metaLoc string
	if s.cfg.MetadataLocation != "" {
		loc, err := s.fio.metadataFile(s.cfg.MetadataLocation)
		if err != nil {
			return err
		}
		tbl, err := table.NewFromLocation(ctx, []string{path.Base(s.cfg.MetadataLocation)}, loc, fsys, nil)
		if err != nil {
			return fmt.Errorf("iceberg table %s: %w", loc, err)
		}
		s.tbl, metaLoc = tbl, loc
	} else {
		if s.cfg.CatalogName == "" {
			s.cfg.CatalogName = "default"
		}
		if s.cat == nil {
			cat, err := catalog.Load(ctx, s.cfg.CatalogName, s.catalogProps())
			if err != nil {
				return fmt.Errorf("iceberg %s catalog: %w", s.cfg.CatalogType, err)
			}
			s.cat = cat
		}
		tbl, err := s.cat.LoadTable(ctx, catalog.ToIdentifier(s.cfg.TableName))
		if err != nil {
			return fmt.Errorf("iceberg table %s: %w", s.cfg.TableName, err)
		}
		// Read through Sluice's IO (its S3 settings), not the catalog's.
		metaLoc = tbl.MetadataLocation()
		s.tbl = table.New(tbl.Identifier(), tbl.Metadata(), metaLoc, fsys, nil)
	}
	if s.cfg.AllowMovedPaths {
		s.fio.from = normalize(s.tbl.Location())
		s.fio.to = strings.TrimSuffix(strings.TrimSuffix(metaLoc, "/"+path.Base(metaLoc)), "/metadata")
	}
	return nil
}

func (s *Source) catalogProps() iceberggo.Properties {
	props := iceberggo.Properties{"type": s.cfg.CatalogType}
	set := func(k, v string) {
		if v != "" {
			props[k] = v
		}
	}
	switch s.cfg.CatalogType {
	case "rest":
		set("uri", s.cfg.RestURI)
		set("warehouse", s.cfg.RestWarehouse)
		set("credential", s.cfg.RestCredential)
		set("token", s.cfg.RestToken)
		set("prefix", s.cfg.RestPrefix)
		set("scope", s.cfg.RestScope)
		set("oauth2-server-uri", s.cfg.RestOAuth2ServerURI)
	case "sql":
		set("uri", s.cfg.SQLURI)
		set("sql.driver", s.cfg.SQLDriver)
		dialect := s.cfg.SQLDialect
		if dialect == "" {
			dialect = icebergconfig.Dialects[s.cfg.SQLDriver]
		}
		set("sql.dialect", dialect)
	}
	return props
}

// Resolve fixes the start at the connector's first activation: the
// snapshot to read (snapshot modes) or the snapshot after which to
// follow (mode follow): snapshot_id, datetime or the current one. A
// table without snapshots starts empty; the follow modes then ingest its
// first snapshot when it appears. An end_snapshot_id that the table
// lacks, or that does not descend from the start, is fatal.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	phase := PhaseSnapshot
	if s.cfg.Mode == ModeFollow {
		phase = PhaseFollow
	}
	var snap *table.Snapshot
	switch {
	case s.cfg.SnapshotID != nil:
		if snap = s.tbl.SnapshotByID(*s.cfg.SnapshotID); snap == nil {
			return nil, connectors.Fatal(fmt.Errorf("iceberg table %s has no snapshot %d", s.tbl.Location(), *s.cfg.SnapshotID))
		}
	case s.cfg.Datetime != "":
		t, _ := connectors.ParseDatetime(s.cfg.Datetime)
		if snap = s.snapshotAsOf(t.UnixMilli()); snap == nil {
			return nil, connectors.Fatal(fmt.Errorf("iceberg table %s has no snapshot at or before %s", s.tbl.Location(), s.cfg.Datetime))
		}
	default:
		if snap = s.tbl.CurrentSnapshot(); snap == nil {
			return json.Marshal(Checkpoint{Phase: phase, Empty: true}) // a table without data
		}
	}
	cp := Checkpoint{Phase: phase, SnapshotID: snap.SnapshotID, Done: phase == PhaseFollow}
	if err := s.checkEnd(cp); err != nil {
		return nil, err
	}
	return json.Marshal(cp)
}

// checkEnd checks that end_snapshot_id, if set, can end input from cp:
// it is cp's snapshot, or a snapshot of the table with cp's snapshot
// (any, for an empty start) on its parent chain. Follow would otherwise
// never reach it and poll for ever, although the source is bounded.
func (s *Source) checkEnd(cp Checkpoint) error {
	end := s.cfg.EndSnapshotID
	if end == nil || (!cp.Empty && cp.SnapshotID == *end) {
		return nil
	}
	endSnap := s.tbl.SnapshotByID(*end)
	if endSnap == nil {
		return connectors.Fatal(fmt.Errorf("iceberg table %s has no snapshot end_snapshot_id %d", s.tbl.Location(), *end))
	}
	if cp.Empty || s.onChain(endSnap, cp.SnapshotID) {
		return nil
	}
	if start := s.tbl.SnapshotByID(cp.SnapshotID); start != nil && s.onChain(start, *end) {
		return connectors.Fatal(fmt.Errorf("iceberg table %s: end_snapshot_id %d comes before the start snapshot %d", s.tbl.Location(), *end, cp.SnapshotID))
	}
	return connectors.Fatal(fmt.Errorf("iceberg table %s: end_snapshot_id %d does not descend from the start snapshot %d (another branch, or expired history between them)", s.tbl.Location(), *end, cp.SnapshotID))
}

// onChain reports whether snapshot id is snap or one of its ancestors
// still in the table's metadata.
func (s *Source) onChain(snap *table.Snapshot, id int64) bool {
	for a := snap; a != nil; {
		if a.SnapshotID == id {
			return true
		}
		if a.ParentSnapshotID == nil {
			return false
		}
		a = s.tbl.SnapshotByID(*a.ParentSnapshotID)
	}
	return false
}

// checkNext checks, before following snapshot next, that end_snapshot_id
// is next or descends from it: history that went another way (the end
// is on a branch, or was rolled back) would never reach the end.
func (s *Source) checkNext(next *table.Snapshot) error {
	end := s.cfg.EndSnapshotID
	if end == nil {
		return nil
	}
	if endSnap := s.tbl.SnapshotByID(*end); endSnap != nil && s.onChain(endSnap, next.SnapshotID) {
		return nil
	}
	return connectors.Fatal(fmt.Errorf("iceberg table %s: the next snapshot to follow, %d, is not on the history of end_snapshot_id %d (another branch, or rolled back?); following on would never reach it",
		s.tbl.Location(), next.SnapshotID, *end))
}

// snapshotAsOf returns the snapshot that was current at ms: from the
// snapshot log, else the newest ancestor of the current snapshot
// committed at or before ms (writers that commit several snapshots in one
// metadata update log only the last).
func (s *Source) snapshotAsOf(ms int64) *table.Snapshot {
	if snap := s.tbl.SnapshotAsOf(ms, true); snap != nil {
		return snap
	}
	for snap := s.tbl.CurrentSnapshot(); snap != nil; {
		if snap.TimestampMs <= ms {
			return snap
		}
		if snap.ParentSnapshotID == nil {
			return nil
		}
		snap = s.tbl.SnapshotByID(*snap.ParentSnapshotID)
	}
	return nil
}

// Open loads the table and plans the checkpoint's snapshot or change.
// A missing (expired) snapshot, an end_snapshot_id that the table lacks
// or that does not descend from the checkpoint's snapshot, deletion
// vectors and files that are not Parquet are fatal.
func (s *Source) Open(ctx context.Context, checkpoint connectors.Checkpoint) error {
	if len(checkpoint) == 0 {
		var err error
		if checkpoint, err = s.Resolve(ctx); err != nil {
			return err
		}
	} else if err := s.load(ctx); err != nil {
		return err
	}
	if err := json.Unmarshal(checkpoint, &s.cp); err != nil {
		return connectors.Fatal(fmt.Errorf("iceberg_input checkpoint %s: %w", checkpoint, err))
	}
	if s.cp.Phase == "" {
		s.cp.Phase = PhaseSnapshot
	}
	if err := s.checkEnd(s.cp); err != nil {
		return err
	}
	s.matchColumns()
	if s.cp.Empty || s.cp.Done {
		return nil
	}
	return s.plan(ctx)
}

// matchColumns maps each table column to its Iceberg field id in the
// table's current schema (exactly by name, else case-insensitively).
// Data files are then matched by field id, so files written before a
// column was renamed still read into it (Iceberg spec, "Column
// Projection"). Columns already matched keep their id.
func (s *Source) matchColumns() {
	cur := s.tbl.Schema()
	if s.ids == nil {
		s.ids = make([]int, s.p.Schema.NumFields())
	}
	for i, f := range s.p.Schema.Fields() {
		if s.ids[i] != 0 {
			continue
		}
		if nf, ok := cur.FindFieldByName(f.Name); ok {
			s.ids[i] = nf.ID
		} else if nf, ok := cur.FindFieldByNameCaseInsensitive(f.Name); ok {
			s.ids[i] = nf.ID
		}
	}
}

// Read returns the next batch: rows of the snapshot (weight +1) or of a
// followed snapshot's changes (+1 inserts, -1 deletes), or an empty batch
// whose checkpoint moves past a snapshot. The follow modes wait for new
// snapshots, polling every [PollInterval]; snapshot mode, and the follow
// modes once end_snapshot_id has been ingested, return
// connectors.ErrEndOfInput.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	for {
		if s.cur != nil {
			rec, err := s.cur.next(ctx)
			if err == nil {
				s.cp.Row = s.cur.row
				if rec != nil && s.filter != nil && s.cp.Phase == PhaseSnapshot {
					if rec, err = s.filter.Apply(compute.WithAllocator(ctx, s.p.Alloc()), rec); err != nil {
						return connectors.Batch{}, fmt.Errorf("snapshot_filter: %w", err)
					}
				}
				cp, _ := json.Marshal(s.cp)
				return connectors.Batch{Record: rec, Checkpoint: cp}, nil
			}
			if !errors.Is(err, io.EOF) {
				return connectors.Batch{}, fmt.Errorf("%s: %w", s.units[s.cp.File].path, err)
			}
			s.closeFile()
			s.cp.File++
			s.cp.Row = 0
		}
		if !s.cp.Empty && !s.cp.Done {
			if !s.planned {
				if err := s.plan(ctx); err != nil {
					return connectors.Batch{}, err
				}
			}
			if s.cp.File < len(s.units) {
				r, err := s.open(ctx, s.units[s.cp.File])
				if err != nil {
					return connectors.Batch{}, err
				}
				s.cur = r
				continue
			}
			// The snapshot or the followed change is done.
			s.cp = Checkpoint{Phase: s.cp.Phase, SnapshotID: s.cp.SnapshotID, Done: true}
			s.units, s.planned = nil, false
			if s.cfg.Mode == ModeSnapshot {
				return connectors.Batch{}, connectors.ErrEndOfInput
			}
			cp, _ := json.Marshal(s.cp)
			return connectors.Batch{Checkpoint: cp}, nil
		}
		if s.cfg.Mode == ModeSnapshot {
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		if end := s.cfg.EndSnapshotID; end != nil && s.cp.Done && s.cp.SnapshotID == *end {
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		next, err := s.child()
		if err == nil && next == nil {
			if err = s.refresh(ctx); err == nil {
				next, err = s.child()
			}
		}
		if err != nil {
			return connectors.Batch{}, err
		}
		if next == nil {
			select {
			case <-ctx.Done():
				return connectors.Batch{}, ctx.Err()
			case <-time.After(PollInterval):
			}
			continue
		}
		if err := s.checkNext(next); err != nil {
			return connectors.Batch{}, err
		}
		s.cp = Checkpoint{Phase: PhaseFollow, SnapshotID: next.SnapshotID}
	}
}

// child returns the snapshot to follow after the checkpoint's: its child
// on the current snapshot's parent chain (the chain's root for an empty
// start), or nil if the checkpoint's snapshot is the current one. A
// checkpoint snapshot that is no longer an ancestor of the current
// snapshot (a rollback, or expired history) is fatal: following on would
// skip or repeat changes.
func (s *Source) child() (*table.Snapshot, error) {
	cur := s.tbl.CurrentSnapshot()
	if cur == nil && !s.cp.Empty {
		return nil, connectors.Fatal(fmt.Errorf("iceberg table %s has no current snapshot any more; cannot follow on from snapshot %d", s.tbl.Location(), s.cp.SnapshotID))
	}
	var prev *table.Snapshot
	for snap := cur; snap != nil; {
		if !s.cp.Empty && snap.SnapshotID == s.cp.SnapshotID {
			return prev, nil
		}
		prev = snap
		if snap.ParentSnapshotID == nil {
			break
		}
		parent := s.tbl.SnapshotByID(*snap.ParentSnapshotID)
		if parent == nil {
			return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: snapshot %d, parent of %d, no longer exists (expired?); cannot follow on from snapshot %d",
				s.tbl.Location(), *snap.ParentSnapshotID, snap.SnapshotID, s.cp.SnapshotID))
		}
		snap = parent
	}
	if s.cp.Empty {
		return prev, nil // the root, or nil for a table still empty
	}
	return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: snapshot %d is not an ancestor of the current snapshot %d (rolled back?); cannot follow on from it",
		s.tbl.Location(), s.cp.SnapshotID, cur.SnapshotID))
}

func (s *Source) closeFile() error {
	if s.cur == nil {
		return nil
	}
	err := s.cur.Close()
	s.cur = nil
	return err
}

// Close closes the open data file.
func (s *Source) Close() error { return s.closeFile() }
