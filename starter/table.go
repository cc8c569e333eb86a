package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

func newTableCmd(g *globals) *cobra.Command {
	var changes bool
	var formatName string
	var limit int
	var from int64
	cmd := &cobra.Command{
		Use:   "table PIPELINE TABLE",
		Short: "Print a table's current rows (weights applied) or its change stream",
		Long: `Print a table's rows from the table store (--data-dir): by default its current
snapshot's rows, every insert minus every delete, in commit order; with
--changes the change stream, version by version (--from-version on), each row
with its weight, the table version that committed it and the connector that
wrote it.

When the table has no deletes (its data files' statistics say so), rows are
streamed and --limit N reads only as far as the N-th row; a table with deletes
is read whole to net them first.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeTableArgs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if formatName != "json" && formatName != "csv" {
				return fmt.Errorf("--format: want json or csv, got %q", formatName)
			}
			t, err := store.Open(cmd.Context(), store.Location(g.dataDir, args[0], args[1]), g.storeOptions())
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no table %s in pipeline %s under %s", args[1], args[0], g.dataDir)
			}
			if err != nil {
				return err
			}
			w := newRowWriter(formatName, changes)
			defer w.flush()
			n := 0
			if changes {
				err := t.Changes(cmd.Context(), from, -1, func(c store.Change, rec arrow.RecordBatch) error {
					for i := range int(rec.NumRows()) {
						if limit > 0 && n >= limit {
							return errStop
						}
						row, weight := rowValues(rec, i)
						w.write(rec.Schema(), row, weight, &c)
						n++
					}
					return nil
				})
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			_, files, err := t.Snapshot(cmd.Context())
			if err != nil {
				return err
			}
			if store.InsertsOnly(files) {
				// No deletes to net: stream the rows, stopping once limit
				// rows are out (no further batch or file is read).
				err := t.ScanFiles(cmd.Context(), files, func(rec arrow.RecordBatch) error {
					for i := range int(rec.NumRows()) {
						row, weight := rowValues(rec, i)
						for range weight {
							if limit > 0 && n >= limit {
								return errStop
							}
							w.write(rec.Schema(), row, 1, nil)
							n++
						}
					}
					if limit > 0 && n >= limit {
						return errStop // done: do not open the next file
					}
					return nil
				})
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			if limit > 0 {
				fmt.Fprintf(os.Stderr, "note: table %s has deletes: reading all of it to net them before printing %d rows\n", args[1], limit)
			}
			return netRows(cmd.Context(), t, files, func(schema *arrow.Schema, row []any) bool {
				if limit > 0 && n >= limit {
					return false
				}
				w.write(schema, row, 1, nil)
				n++
				return true
			})
		},
	}
	cmd.Flags().BoolVar(&changes, "changes", false, "print the change stream instead of the current rows")
	cmd.Flags().StringVar(&formatName, "format", "json", "json (one object per line) or csv")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most N rows (0: all)")
	cmd.Flags().Int64Var(&from, "from-version", 0, "with --changes: start at this table version")
	return cmd
}

var errStop = errors.New("stop")

// netRows reads every row of files, nets inserts and deletes, and calls
// emit with each row that remains, in commit order (a delete cancels the
// row's earliest insert not cancelled yet), until emit returns false.
// For a table without deletes that is every row as stored, as the
// streaming read prints them.
func netRows(ctx context.Context, t *store.Table, files []*delta.File, emit func(*arrow.Schema, []any) bool) error {
	type entry struct {
		row  []any
		live []int // positions of the inserts not cancelled, in order
		owed int64 // deletes seen before their inserts
	}
	keys := map[string]*entry{}
	var byPos []*entry
	var schema *arrow.Schema
	err := t.ScanFiles(ctx, files, func(rec arrow.RecordBatch) error {
		schema = rec.Schema()
		for i := range int(rec.NumRows()) {
			row, weight := rowValues(rec, i)
			key, _ := json.Marshal(row)
			e := keys[string(key)]
			if e == nil {
				e = &entry{row: row}
				keys[string(key)] = e
			}
			for ; weight > 0; weight-- {
				if e.owed > 0 {
					e.owed--
					continue
				}
				e.live = append(e.live, len(byPos))
				byPos = append(byPos, e)
			}
			for ; weight < 0; weight++ {
				if len(e.live) == 0 {
					e.owed++
					continue
				}
				byPos[e.live[0]] = nil
				e.live = e.live[1:]
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range byPos {
		if e != nil && !emit(schema, e.row) {
			return nil
		}
	}
	return nil
}

// rowValues returns a row's column values (JSON-ready) and its weight.
func rowValues(rec arrow.RecordBatch, i int) ([]any, int64) {
	n := int(rec.NumCols()) - 1
	row := make([]any, n)
	for c := range n {
		col := rec.Column(c)
		if col.IsNull(i) {
			continue
		}
		row[c] = col.GetOneForMarshal(i)
	}
	weight := rec.Column(n).GetOneForMarshal(i).(int64)
	return row, weight
}

type rowWriter struct {
	format  string
	changes bool
	out     *bufio.Writer
	csv     *csv.Writer
	header  bool
}

func newRowWriter(format string, changes bool) *rowWriter {
	out := bufio.NewWriter(os.Stdout)
	return &rowWriter{format: format, changes: changes, out: out, csv: csv.NewWriter(out)}
}

func (w *rowWriter) write(schema *arrow.Schema, row []any, weight int64, c *store.Change) {
	if w.format == "json" {
		obj := make(map[string]any, len(row)+3)
		for i, v := range row {
			obj[schema.Field(i).Name] = v
		}
		if w.changes {
			obj[pipeline.WeightColumn] = weight
			obj["_version"] = c.Version
			obj["_connector"] = c.Connector
		}
		b, _ := json.Marshal(obj)
		w.out.Write(b)
		w.out.WriteByte('\n')
		return
	}
	if !w.header {
		var names []string
		for i := range row {
			names = append(names, schema.Field(i).Name)
		}
		if w.changes {
			names = append(names, pipeline.WeightColumn, "_version", "_connector")
		}
		_ = w.csv.Write(names)
		w.header = true
	}
	rec := make([]string, 0, len(row)+3)
	for _, v := range row {
		switch v := v.(type) {
		case nil:
			rec = append(rec, "")
		case string:
			rec = append(rec, v)
		default:
			b, _ := json.Marshal(v)
			rec = append(rec, string(b))
		}
	}
	if w.changes {
		rec = append(rec, strconv.FormatInt(weight, 10), strconv.FormatInt(c.Version, 10), c.Connector)
	}
	_ = w.csv.Write(rec)
}

func (w *rowWriter) flush() {
	w.csv.Flush()
	w.out.Flush()
}
