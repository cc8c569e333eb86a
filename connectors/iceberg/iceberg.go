package iceberg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

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
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/connectors/predicate"
)

// Checkpoint is iceberg_input's position: the snapshot being read, the
// index of the data file in the scan's files (sorted by path) and the
// rows of it already read. Empty marks a table with no snapshot.
type Checkpoint struct {
	SnapshotID int64 `json:"snapshot_id"`
	File       int   `json:"file"`
	Row        int64 `json:"row"`
	Empty      bool  `json:"empty,omitempty"`
}

// Source reads one snapshot of an Iceberg table.
type Source struct {
	cfg    Config
	p      connectors.Params
	filter *predicate.Predicate

	fio   *fileIO
	tbl   *table.Table
	cp    Checkpoint
	files []string              // data files of the snapshot, sorted
	ids   []int                 // the Iceberg field id of each table column, 0 if none
	cur   *format.ParquetReader // owns and closes its data file
}

// New validates the config without I/O.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	if p.Format != nil {
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: errors.New("iceberg_input reads typed columns and takes no format")}
	}
	if err := cfg.Validate(p.Schema); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, p: p}
	if cfg.SnapshotFilter != "" {
		s.filter, _ = predicate.Parse(cfg.SnapshotFilter, p.Schema)
	}
	return s, nil
}

// Bounded is true: iceberg_input reaches end of input after its snapshot.
func (s *Source) Bounded() bool { return true }

// load loads the table's metadata through the catalog or the metadata
// location. Missing tables and unreachable catalogs are fatal.
func (s *Source) load(ctx context.Context) error {
	if s.tbl != nil {
		return nil
	}
	s.fio = &fileIO{ctx: ctx, settings: s.cfg.Settings}
	fsys := func(context.Context) (icebergio.IO, error) { return s.fio, nil }
	var metaLoc string
	if s.cfg.MetadataLocation != "" {
		loc, err := s.fio.metadataFile(s.cfg.MetadataLocation)
		if err != nil {
			return connectors.Fatal(err)
		}
		tbl, err := table.NewFromLocation(ctx, []string{path.Base(s.cfg.MetadataLocation)}, loc, fsys, nil)
		if err != nil {
			return connectors.Fatal(fmt.Errorf("iceberg table %s: %w", loc, err))
		}
		s.tbl, metaLoc = tbl, loc
	} else {
		if s.cfg.CatalogName == "" {
			s.cfg.CatalogName = "default"
		}
		cat, err := catalog.Load(ctx, s.cfg.CatalogName, s.catalogProps())
		if err != nil {
			return connectors.Fatal(fmt.Errorf("iceberg %s catalog: %w", s.cfg.CatalogType, err))
		}
		tbl, err := cat.LoadTable(ctx, catalog.ToIdentifier(s.cfg.TableName))
		if err != nil {
			return connectors.Fatal(fmt.Errorf("iceberg table %s: %w", s.cfg.TableName, err))
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
			dialect = dialects[s.cfg.SQLDriver]
		}
		set("sql.dialect", dialect)
	}
	return props
}

// Resolve fixes the snapshot at the connector's first activation.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	if err := s.load(ctx); err != nil {
		return nil, err
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
			return json.Marshal(Checkpoint{Empty: true}) // a table without data
		}
	}
	return json.Marshal(Checkpoint{SnapshotID: snap.SnapshotID})
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

// Open plans the scan of the checkpoint's snapshot. Delete files and
// data files that are not Parquet are fatal.
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
	if s.cp.Empty {
		return nil
	}
	if s.tbl.SnapshotByID(s.cp.SnapshotID) == nil {
		return connectors.Fatal(fmt.Errorf("iceberg table %s: snapshot %d no longer exists (expired?)", s.tbl.Location(), s.cp.SnapshotID))
	}
	tasks, err := s.tbl.Scan(table.WithSnapshotID(s.cp.SnapshotID)).PlanFiles(ctx)
	if err != nil {
		return connectors.Fatal(fmt.Errorf("iceberg table %s: plan snapshot %d: %w", s.tbl.Location(), s.cp.SnapshotID, err))
	}
	for _, t := range tasks {
		if n := len(t.DeleteFiles) + len(t.EqualityDeleteFiles) + len(t.DeletionVectorFiles); n > 0 {
			return connectors.Fatal(fmt.Errorf("iceberg table %s: data file %s has %d delete files (position or equality deletes, or deletion vectors), which Sluice does not support yet",
				s.tbl.Location(), t.File.FilePath(), n))
		}
		if f := t.File.FileFormat(); f != iceberggo.ParquetFile {
			return connectors.Fatal(fmt.Errorf("iceberg table %s: data file %s is %s; Sluice reads Parquet", s.tbl.Location(), t.File.FilePath(), f))
		}
		s.files = append(s.files, t.File.FilePath())
	}
	sort.Strings(s.files)
	// Data files are matched by field id, so files written before a
	// column was renamed still read into it (Iceberg spec, "Column
	// Projection"); table columns name the current schema's fields.
	cur := s.tbl.Schema()
	for _, f := range s.p.Schema.Fields() {
		id := 0
		if nf, ok := cur.FindFieldByName(f.Name); ok {
			id = nf.ID
		} else if nf, ok := cur.FindFieldByNameCaseInsensitive(f.Name); ok {
			id = nf.ID
		}
		s.ids = append(s.ids, id)
	}
	return nil
}

// Read returns the next batch of the snapshot; connectors.ErrEndOfInput
// after its last row.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	for {
		if s.cur != nil {
			rec, err := s.cur.Next(ctx)
			if err == nil {
				s.cp.Row = s.cur.Row()
				if s.filter != nil {
					if rec, err = s.filter.Apply(compute.WithAllocator(ctx, s.p.Alloc()), rec); err != nil {
						return connectors.Batch{}, fmt.Errorf("snapshot_filter: %w", err)
					}
				}
				cp, _ := json.Marshal(s.cp)
				return connectors.Batch{Record: rec, Checkpoint: cp}, nil
			}
			if !errors.Is(err, io.EOF) {
				return connectors.Batch{}, fmt.Errorf("%s: %w", s.files[s.cp.File], err)
			}
			s.closeFile()
			s.cp.File++
			s.cp.Row = 0
		}
		if s.cp.Empty || s.cp.File >= len(s.files) {
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		name := s.files[s.cp.File]
		f, err := s.fio.Open(name)
		if err != nil {
			return connectors.Batch{}, connectors.Fatal(fmt.Errorf("iceberg table %s snapshot %d: %w", s.tbl.Location(), s.cp.SnapshotID, err))
		}
		pq, err := format.OpenParquetMatched(ctx, f, s.p.Schema, format.ByFieldID(s.ids, format.ByName(nil)), s.p.Alloc(), s.p.BatchSize, s.cp.Row)
		if err != nil {
			f.Close()
			return connectors.Batch{}, fmt.Errorf("%s: %w", name, err)
		}
		s.cur = pq
	}
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
